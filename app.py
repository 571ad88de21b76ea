"""DAAM Lens: a Gradio app that shows what Density Adaptive Attention does with your input.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

Thin glue: it assembles the tabs of ui/ (one per loaded checkpoint's modality, daam.modalities; then Compare,
Playground and Models) and serves them. Checkpoints load on first use (`main()` loads them before serving), so
importing this module is cheap."""

from __future__ import annotations

import logging
import os

import gradio as gr

from daam.modalities import MODALITIES
from ui import serving
from ui.compare_tab import compare_tab
from ui.explain_tab import modality_tab
from ui.inputs import examples_of
from ui.models_tab import models_tab
from ui.playground_tab import playground, playground_tab

MAX_UPLOAD = "10mb"


def build() -> gr.Blocks:
    models, missing = serving.loaded()
    with gr.Blocks(title="DAAM Lens") as demo:
        gr.Markdown("# DAAM Lens\nSee what **Density Adaptive Attention** does with your input: each head gates "
                    "every feature by a learned mixture of Gaussians of its z-score.")
        for name, entry in MODALITIES.items():
            with gr.Tab(entry.title):
                if name in models:
                    modality_tab(name, examples_of(name))
                else:
                    gr.Markdown(missing[name])
        with gr.Tab("Compare"):
            compare_tab(models, missing)
        with gr.Tab("Playground"):
            mode, sliders, outputs = playground_tab()
        with gr.Tab("Models"):
            models_tab(models, missing)
        demo.load(playground, [mode, *sliders], outputs, api_visibility="private")
        for name, entry in MODALITIES.items():  # text endpoints take a string; file ones are wired in their tabs
            if entry.input_kind == "text":
                for verb in serving.ENDPOINTS:
                    gr.api(serving.endpoint(verb, name), api_name=f"{verb}_{name}")
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    demo = build()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), max_file_size=MAX_UPLOAD,
                show_error=False)


if __name__ == "__main__":
    main()
