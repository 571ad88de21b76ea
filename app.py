"""DAAM Lens: a Gradio app that shows what Density Adaptive Attention does with your input.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

Thin glue: inputs -> daam (inference, plain data) -> viz (Plotly figures)."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch

import viz
from daam import MultiHeadDensityAdaptiveAttention, load_checkpoints
from viz.gallery import figures_html, html_page

ROOT = Path(__file__).resolve().parent
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MAX_TEXT_CHARS = 50_000  # the encoder reads 512 tokens; far longer text only costs tokenisation time
MAX_UPLOAD = "10mb"
PLAYGROUND_DENSITIES = 3
MEAN_OF_HEADS = "mean of heads"
EXPORTS = Path(tempfile.mkdtemp(prefix="daam-lens-exports-"))  # one folder per process
KEEP_EXPORTS = 16
log = logging.getLogger("daam-lens")

try:  # on Hugging Face ZeroGPU Spaces, inference must run inside spaces.GPU
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

MODELS, MISSING = load_checkpoints(ROOT / "checkpoints", device=DEVICE)
for _loaded in MODELS.values():
    _loaded.encoder  # build the frozen encoder now, not during the first request


def _user_errors(fn):
    """Bad input becomes a gr.Error with a human message; anything else a generic one (no stack trace in the UI)."""
    @functools.wraps(fn)  # keeps the signature: gr.api derives the endpoint's parameters from it
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as error:
            raise gr.Error(str(error)) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error("Something went wrong while explaining this input; please try another one.") from None
    return wrapped


def _model(modality: str):
    if modality not in MODELS:
        raise gr.Error(MISSING.get(modality, f"No {modality} model."))
    return MODELS[modality]


# ---------------------------------------------------------------------------- inference
@gpu
def _explain_text(text: str):
    if not isinstance(text, str):
        raise ValueError("Please send the text as a string.")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"The text has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,} "
                         "(the encoder reads only the first 512 tokens anyway).")
    return _model("text").explain(text)


@_user_errors
def explain_text(text: str) -> dict:
    """Explain a sentence with the text DAAM checkpoint: the Explanation as JSON."""
    return json.loads(_explain_text(text).to_json())


# ---------------------------------------------------------------------------- views
def _head_choices(explanation: dict | None) -> list[str]:
    heads = 0 if explanation is None else len(explanation["position_weights"])
    return [MEAN_OF_HEADS] + [f"head {h}" for h in range(heads)]


def _render(explanation: dict, head_choice: str, normalise: bool):
    head = None if head_choice in (None, MEAN_OF_HEADS) else int(head_choice.split()[-1])
    figs = viz.explanation_figures(explanation, head=head, normalise_per_head=normalise)
    summary = (f"**{explanation['predicted_label']}** ({max(explanation['probabilities']):.1%})"
               + (" — the input was truncated to the encoder's 512 tokens." if explanation["truncated"] else "")
               + f"  \nencoder {explanation['timings']['encoder_ms']:.0f} ms, DAAM {explanation['timings']['daam_ms']:.0f} ms")
    return (summary, figs["prediction"], figs["positions"], figs["highlighted_text"], figs["density_positions"],
            figs["density_layers"], figs["layer_importance"])


@_user_errors
def text_view(text: str, head_choice: str, normalise: bool):
    explanation = explain_text(text)
    choice = head_choice if head_choice in _head_choices(explanation) else MEAN_OF_HEADS
    return (explanation, gr.update(choices=_head_choices(explanation), value=choice),
            *_render(explanation, choice, normalise))


@_user_errors
def rerender(explanation: dict | None, head_choice: str, normalise: bool):
    if explanation is None:
        raise gr.Error("Explain a sentence first.")
    return _render(explanation, head_choice, normalise)


@_user_errors
def export(explanation: dict | None):
    """The Explanation JSON and every figure as one offline HTML page, as downloadable files."""
    if explanation is None:
        raise gr.Error("Explain something first; then its JSON and figures can be downloaded.")
    # Gradio copies returned files into its own cache, so older exports can go: the folder stays small.
    for old in sorted(EXPORTS.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEEP_EXPORTS]:
        shutil.rmtree(old, ignore_errors=True)
    out = Path(tempfile.mkdtemp(dir=EXPORTS))
    (out / "explanation.json").write_text(json.dumps(explanation))
    body = figures_html(viz.explanation_figures(explanation), id_prefix="export")
    (out / "figures.html").write_text(html_page("DAAM Lens explanation", body))
    return [str(out / "explanation.json"), str(out / "figures.html")]


# ---------------------------------------------------------------------------- playground
# A fixed bimodal sample: shows what a multi-modal gate keeps and a single Gaussian cannot.
SAMPLE = np.concatenate([np.random.default_rng(0).normal(-2.0, 0.5, 700), np.random.default_rng(1).normal(1.5, 0.8, 500)])
# Dropdown label -> (attention module, head) a playground start can be read from.
PLAYGROUND_HEADS = {f"{m}: {stage} stage, head {h}": (attention, h) for m, model in MODELS.items()
                    for stage, attention in (("positions", model.position_attention), ("layers", model.layer_attention))
                    for h in range(attention.num_heads)}
FROM_SCRATCH = "from scratch"
# Slider (name, low, high) and the scratch start: three well-separated narrow densities.
PLAYGROUND_SLIDERS = (("offset", -4, 4), ("scale", 0.05, 3), ("weight", 0.001, 1))
SCRATCH = {"offset": [-2.0, 0.0, 2.0], "scale": [0.6] * 3, "weight": [1.0] * 3}


def _playground_layer(mode: str, values: list[float]) -> MultiHeadDensityAdaptiveAttention:
    k = PLAYGROUND_DENSITIES
    layer = MultiHeadDensityAdaptiveAttention(1, 1, k, mode=mode)
    offsets, scales, weights = np.array(values[:k]), np.array(values[k:2 * k]), np.array(values[2 * k:])
    layer.set_density_parameters(offsets[None], scales[None], np.maximum(weights, 1e-3)[None])
    return layer


@_user_errors
@torch.inference_mode()
def playground(mode: str, *values: float):
    layer = _playground_layer(mode, list(values))
    x = torch.as_tensor(SAMPLE, dtype=torch.float32)[None]  # (1, samples): statistics over the sample
    _, gate = layer(x, return_weights=True)
    grid = torch.linspace(-4, 4, 161)
    curve, components = layer.density_curve(grid, components=True)
    density = {"grid": grid.numpy(), "curve": curve.numpy(), "components": components.numpy(), "mode": mode}
    curve_np = curve[0].numpy()
    peaks = int(((curve_np[1:-1] > curve_np[:-2]) & (curve_np[1:-1] >= curve_np[2:])).sum())
    if mode == "product":
        centre, scale, peak = (float(t[0]) for t in layer.collapsed_gaussian())
        text = (f"**Product mode** is one Gaussian, whatever the sliders: centre {centre:.2f}, scale {scale:.2f}, "
                f"peak {peak:.3g}. It has {peaks} peak.")
    else:
        text = f"**Mixture mode**: the gate has {peaks} peak{'s' if peaks != 1 else ''}."
    return (text, viz.mixture_curves(density, [layer.z_scores(x)[0].numpy()]),
            viz.gated_sample(SAMPLE, gate[0].numpy()))


@_user_errors
def playground_start(source: str):
    """Slider values from a checkpoint head (or the scratch defaults)."""
    k = PLAYGROUND_DENSITIES
    if source not in PLAYGROUND_HEADS:
        return [v for name, _, _ in PLAYGROUND_SLIDERS for v in SCRATCH[name]]
    attention, head = PLAYGROUND_HEADS[source]
    p = attention.density_parameters()
    values = [p[key][head].tolist() for key in ("offsets", "scales", "weights")]
    if any(len(v) != k for v in values):
        raise gr.Error(f"This head has {len(values[0])} densities; the playground shows {k}.")
    return [float(np.clip(v, lo, hi)) for vs, (_, lo, hi) in zip(values, PLAYGROUND_SLIDERS) for v in vs]


# ---------------------------------------------------------------------------- layout
def build() -> gr.Blocks:
    with gr.Blocks(title="DAAM Lens") as demo:
        gr.Markdown("# DAAM Lens\nSee what **Density Adaptive Attention** does with your input: each head gates "
                    "every feature by a learned mixture of Gaussians of its z-score.")
        explanation = gr.State(None)
        with gr.Tab("Text"):
            if "text" in MODELS:
                with gr.Row():
                    text = gr.Textbox(label="Sentence", lines=3, max_length=MAX_TEXT_CHARS, elem_id="text-input",
                                      placeholder="A warm, funny and beautifully acted film.")
                    with gr.Column(scale=0, min_width=200):
                        head = gr.Dropdown(_head_choices(None), value=MEAN_OF_HEADS, label="Head", elem_id="head")
                        normalise = gr.Checkbox(label="Normalise each head to 0–1")
                        go_button = gr.Button("Explain", variant="primary", elem_id="explain-text")
                gr.Examples(["A warm, funny and beautifully acted film that earns every one of its tears.",
                             "The jokes fall flat, the plot makes no sense and the ending drags on forever.",
                             "Gorgeous to look at, but the story is thin and the second half is a slog."], text)
                summary = gr.Markdown(elem_id="text-summary")
                prediction = gr.Plot(label="Prediction")
                heatmap = gr.Plot(label="Density weight per head over tokens", elem_id="token-heatmap")
                highlighted = gr.HTML(label="Highlighted text")
                with gr.Row():
                    density_positions = gr.Plot(label="Densities: positions stage")
                    density_layers = gr.Plot(label="Densities: layers stage")
                importance = gr.Plot(label="Layer importance")
                with gr.Row():
                    export_button = gr.Button("Export JSON and figures")
                    files = gr.File(label="Downloads", file_count="multiple")
                views = [summary, prediction, heatmap, highlighted, density_positions, density_layers, importance]
                inputs = [text, head, normalise]
                go_button.click(text_view, inputs, [explanation, head, *views], api_visibility="private")
                text.submit(text_view, inputs, [explanation, head, *views], api_visibility="private")
                for control in (head, normalise):
                    control.change(rerender, [explanation, head, normalise], views, api_visibility="private")
                export_button.click(export, explanation, files, api_visibility="private")
            else:
                gr.Markdown(MISSING["text"])
        for modality in ("image", "audio"):
            with gr.Tab(modality.capitalize()):
                gr.Markdown(MISSING.get(modality, f"The {modality} view arrives with its checkpoint."))
        with gr.Tab("Playground"):
            gr.Markdown("Shape one head's gate by hand. A **mixture** can keep several ranges of z; the original "
                        "**product** of Gaussians always collapses to a single Gaussian.")
            with gr.Row():
                source = gr.Dropdown([FROM_SCRATCH, *PLAYGROUND_HEADS], value=FROM_SCRATCH, label="Start from")
                mode = gr.Radio(["mixture", "product"], value="mixture", label="Mode", elem_id="mode")
            sliders = []
            with gr.Row():
                for name, lo, hi in PLAYGROUND_SLIDERS:
                    with gr.Column():
                        for k in range(PLAYGROUND_DENSITIES):
                            sliders.append(gr.Slider(lo, hi, value=SCRATCH[name][k], step=0.01, label=f"density {k} {name}",
                                                     elem_id=f"{name}-{k}"))
            verdict = gr.Markdown(elem_id="playground-verdict")
            curve = gr.Plot(label="Gate over z", elem_id="playground-curve")
            sample = gr.Plot(label="A sample input, gated")
            outputs = [verdict, curve, sample]
            for control in [mode, *sliders]:
                control.change(playground, [mode, *sliders], outputs, api_visibility="private")
            source.change(playground_start, source, sliders, api_visibility="private")
            demo.load(playground, [mode, *sliders], outputs, api_visibility="private")
        with gr.Tab("Models"):
            for modality in ("text", "image", "audio"):
                directory = ROOT / "checkpoints" / modality
                with gr.Accordion(f"{modality} checkpoint", open=modality in MODELS):
                    if modality not in MODELS:
                        gr.Markdown(MISSING[modality])
                        continue
                    curves = directory / "training_curves.json"
                    if curves.exists():
                        gr.Plot(viz.training_curves(json.loads(curves.read_text())))
                    card = (directory / "README.md").read_text()
                    gr.Markdown(card.split("---", 2)[-1] if card.startswith("---") else card)
        gr.api(explain_text, api_name="explain_text")
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
