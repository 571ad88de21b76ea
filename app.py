"""DAAM Lens: a Gradio app that shows what Density Adaptive Attention does with your input.

    python app.py                                  # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)
    python app.py --checkpoint my-reviews [...]    # your own checkpoints instead of the shipped three

Thin glue: it assembles the tabs of ui/ (one per served checkpoint, ui.serving; then Compare,
Playground and Models) and serves them. Checkpoints load on first use (`main()` loads them before serving), so
importing this module is cheap."""

from __future__ import annotations

import argparse
import logging
import os

import gradio as gr

from ui import serving
from ui.compare_tab import compare_tab
from ui.dataset_tab import Opener, dataset_endpoint, dataset_tab, has_dataset
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
        openers = {}
        with gr.Tabs() as tabs:
            for name, checkpoint in serving.served().items():
                with gr.Tab(checkpoint.title, id=f"tab-{name}"):
                    if name in models:
                        openers[name] = Opener(f"tab-{name}", *modality_tab(name, examples_of(name)))
                    else:
                        gr.Markdown(missing[name])
            with gr.Tab("Dataset"):
                dataset_tab(openers, tabs)
            with gr.Tab("Compare"):
                compare_tab(models, missing)
            with gr.Tab("Playground"):
                mode, sliders, outputs = playground_tab()
            with gr.Tab("Models"):
                models_tab(models, missing)
        demo.load(playground, [mode, *sliders], outputs, api_visibility="private")
        for name in serving.served():  # text endpoints take a string; file ones are wired in their tabs
            if serving.entry(name).input_kind == "text":
                for verb in serving.ENDPOINTS:
                    gr.api(serving.endpoint(verb, name), api_name=f"{verb}_{name}")
        for name in openers:
            if has_dataset(name):
                gr.api(dataset_endpoint(name), api_name=f"dataset_{name}")
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", metavar="DIR",
                        help="serve this checkpoint (repeat for more) instead of the shipped three; "
                             "DAAM_CHECKPOINTS=DIR:DIR2 does the same")
    args = parser.parse_args(argv)
    chosen = args.checkpoint or [d for d in os.environ.get("DAAM_CHECKPOINTS", "").split(os.pathsep) if d]
    if chosen:
        try:
            serving.serve(chosen)
        except ValueError as error:
            parser.exit(2, f"{parser.prog}: {error}\n")
    logging.basicConfig(level=logging.INFO)
    demo = build()
    demo.queue(default_concurrency_limit=serving.CONCURRENT_REQUESTS, max_size=64)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), max_file_size=MAX_UPLOAD,
                show_error=False)


if __name__ == "__main__":
    main()
