"""The Models tab: each checkpoint's card (its summary, the details folded) and training curves."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
from huggingface_hub import ModelCard

import viz

from . import serving

CARD_SUMMARY_SECTIONS = 2  # a card's first sections (task and data, results) show; the rest fold away


def card_parts(path: Path) -> tuple[str, str]:
    """A model card without its YAML header, split into the summary and the details."""
    sections = ModelCard.load(path).text.split("\n## ")
    keep = CARD_SUMMARY_SECTIONS + 1  # the title and intro come before the first section
    return "\n## ".join(sections[:keep]), "## " + "\n## ".join(sections[keep:]) if len(sections) > keep else ""


def models_tab(models: dict, missing: dict) -> None:
    with gr.Tabs():
        for name, checkpoint in serving.served().items():
            with gr.Tab(f"{checkpoint.title} checkpoint"):
                if name not in models:
                    gr.Markdown(missing[name])
                    continue
                directory = checkpoint.directory
                summary, details = card_parts(directory / "README.md")
                gr.Markdown(summary)
                if details:
                    with gr.Accordion("Details: heads, faithfulness, encoder, how to reproduce, limitations", open=False):
                        gr.Markdown(details)
                curves = directory / "training_curves.json"
                if curves.exists():
                    with gr.Accordion("Training curves", open=False):
                        gr.Plot(viz.training_curves(json.loads(curves.read_text())))
