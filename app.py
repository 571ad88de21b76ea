"""DAAM Lens: a Gradio app that shows what Density Adaptive Attention does with your input.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

Thin glue: inputs -> daam (inference, plain data) -> viz (Plotly figures)."""

from __future__ import annotations

import concurrent.futures
import contextvars
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
from daam.audio import MAX_SECONDS, WINDOW_S, prepare_audio
from viz.gallery import figures_html, html_page

ROOT = Path(__file__).resolve().parent
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MAX_TEXT_CHARS = 50_000  # the encoder reads 512 tokens; far longer text only costs tokenisation time
MAX_UPLOAD = "10mb"
PLAYGROUND_DENSITIES = 3
MEAN_OF_HEADS = "mean of heads"
EXPORTS = Path(tempfile.mkdtemp(prefix="daam-lens-exports-"))  # one folder per process
KEEP_EXPORTS = 16
REQUEST_TIMEOUT_S = 30  # a request that takes longer gets a message instead of holding the page
WORKERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="daam-request")
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
    """Bad input becomes a gr.Error with a human message; anything else a generic one (no stack trace in the UI).

    The work runs on a worker thread (with the request's context, so progress bars still work) and the
    request gets an answer after REQUEST_TIMEOUT_S at the latest."""
    @functools.wraps(fn)  # keeps the signature: gr.api derives the endpoint's parameters from it
    def wrapped(*args, **kwargs):
        future = WORKERS.submit(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            return future.result(timeout=REQUEST_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            log.warning("%s took over %d s", fn.__name__, REQUEST_TIMEOUT_S)
            raise gr.Error(f"This input took longer than {REQUEST_TIMEOUT_S} s to explain; please try a smaller one.") from None
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


@gpu
def _explain_image(image):
    if image is None:
        raise ValueError("Please upload, paste or take a picture first.")
    return _model("image").explain(image)


@gpu
def _explain_audio(audio, progress=None):
    if audio is None:
        raise ValueError("Please upload or record a clip first.")
    model = _model("audio")  # before decoding: a missing checkpoint is the first thing to say
    if progress is not None:
        progress(0.1, desc="decoding, trimming silence")
    prepared = prepare_audio(audio)
    if progress is not None:
        progress(0.5, desc="running the model")
    return model.explain(prepared)


@_user_errors
def explain_text(text: str) -> dict:
    """Explain a sentence with the text DAAM checkpoint: the Explanation as JSON."""
    return _explain_text(text).to_dict()


@_user_errors
def explain_image(image: str) -> dict:
    """Explain an image file (PNG, JPEG, GIF, WebP, BMP, TIFF) with the image checkpoint: the Explanation as JSON."""
    return _explain_image(image).to_dict()


@_user_errors
def explain_audio(audio: str) -> dict:
    """Explain an audio file (WAV, FLAC, OGG) with the audio checkpoint: the Explanation as JSON."""
    return _explain_audio(audio).to_dict()


# ---------------------------------------------------------------------------- views
def _head_choices(explanation: dict | None) -> list[str]:
    heads = 0 if explanation is None else len(explanation["position_weights"])
    return [MEAN_OF_HEADS] + [f"head {h}" for h in range(heads)]


def _summary(explanation: dict) -> str:
    notes = {"text": "the input was truncated to the encoder's 512 tokens",
             "audio": (explanation.get("extras") or {}).get("note", "")}
    note = notes.get(explanation["modality"], "") if explanation["truncated"] else ""
    return (f"**{explanation['predicted_label']}** ({max(explanation['probabilities']):.1%})"
            + (f" — {note}." if note else "")
            + f"  \nencoder {explanation['timings']['encoder_ms']:.0f} ms, DAAM {explanation['timings']['daam_ms']:.0f} ms")


def _render(explanation: dict, head_choice: str, normalise: bool):
    """The figures every modality shows: summary, prediction, positions, both density stages, layer importance."""
    head = None if head_choice in (None, MEAN_OF_HEADS) else int(head_choice.split()[-1])
    figs = viz.explanation_figures(explanation, head=head, normalise_per_head=normalise)
    return (_summary(explanation), figs["prediction"], figs["positions"], figs["density_positions"],
            figs["density_layers"], figs["layer_importance"])


def _highlighted(explanation: dict, head_choice: str) -> str:
    head = None if head_choice in (None, MEAN_OF_HEADS) else int(head_choice.split()[-1])
    return viz.highlighted_text_html(explanation["position_labels"], explanation["position_weights"], head)


@_user_errors
def text_view(text: str, head_choice: str, normalise: bool):
    explanation = _explain_text(text).to_dict()
    choice = head_choice if head_choice in _head_choices(explanation) else MEAN_OF_HEADS
    return (explanation, gr.update(choices=_head_choices(explanation), value=choice),
            *_render(explanation, choice, normalise), _highlighted(explanation, choice))


@_user_errors
def rerender(explanation: dict | None, head_choice: str, normalise: bool):
    if explanation is None:
        raise gr.Error("Explain a sentence first.")
    return (*_render(explanation, head_choice, normalise), _highlighted(explanation, head_choice))


@_user_errors
def image_view(image):
    result = _explain_image(image)
    explanation = result.to_dict()
    return (explanation, result.extras["image"], *_render(explanation, MEAN_OF_HEADS, False))


@_user_errors
def audio_view(audio, progress=gr.Progress()):
    explanation = _explain_audio(audio, progress).to_dict()
    progress(0.8, desc="drawing")
    return (explanation, *_render(explanation, MEAN_OF_HEADS, False))


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
class UploadedImage(gr.Image):
    """gr.Image that hands the uploaded file itself to the handler, undecoded.

    Gradio would decode it with its own settings first (converting modes, and failing with a generic
    error on a non-image); daam.images decodes every case itself and says clearly what is wrong."""

    # Drawn by the browser as the built-in Image component: only the server-side preprocessing differs.
    is_template = True

    @classmethod
    def get_component_class_id(cls) -> str:
        return gr.Image.get_component_class_id()

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)  # Gradio's own upload folder: it has already checked the upload
        return super().preprocess(payload)


def _result_views(prefix: str, positions_label: str) -> list:
    """The outputs every modality tab shows, in _render's order."""
    summary = gr.Markdown(elem_id=f"{prefix}-summary")
    prediction = gr.Plot(label="Prediction")
    positions = gr.Plot(label=positions_label, elem_id=f"{prefix}-positions")
    with gr.Row():
        density_positions = gr.Plot(label="Densities: positions stage")
        density_layers = gr.Plot(label="Densities: layers stage")
    importance = gr.Plot(label="Layer importance")
    return [summary, prediction, positions, density_positions, density_layers, importance]


def _export_row(explanation: gr.State) -> None:
    with gr.Row():
        export_button = gr.Button("Export JSON and figures")
        files = gr.File(label="Downloads", file_count="multiple")
    export_button.click(export, explanation, files, api_visibility="private")


def _api_endpoint(fn, component: gr.components.Component, api_name: str) -> None:
    """A named endpoint over a file input: Gradio's upload checks apply, the answer is the Explanation JSON."""
    trigger = gr.Button(visible=False)
    trigger.click(fn, component, gr.JSON(visible=False), api_name=api_name)


def build() -> gr.Blocks:
    with gr.Blocks(title="DAAM Lens") as demo:
        gr.Markdown("# DAAM Lens\nSee what **Density Adaptive Attention** does with your input: each head gates "
                    "every feature by a learned mixture of Gaussians of its z-score.")
        with gr.Tab("Text"):
            if "text" in MODELS:
                explanation = gr.State(None)
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
                views = _result_views("text", "Density weight per head over tokens")
                views.append(gr.HTML(label="Highlighted text"))
                inputs = [text, head, normalise]
                go_button.click(text_view, inputs, [explanation, head, *views], api_visibility="private")
                text.submit(text_view, inputs, [explanation, head, *views], api_visibility="private")
                for control in (head, normalise):
                    control.change(rerender, [explanation, head, normalise], views, api_visibility="private")
                _export_row(explanation)
            else:
                gr.Markdown(MISSING["text"])
        with gr.Tab("Image"):
            if "image" in MODELS:
                explanation = gr.State(None)
                gr.Markdown("One garment, ideally on a plain background. Photos (dark on light) are inverted, "
                            "cropped and centred to look like Fashion-MNIST: *what the model sees* shows the result.")
                with gr.Row():
                    image = UploadedImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                          label="Image", elem_id="image-input", height=300)
                    seen = gr.Image(label="What the model sees", interactive=False, height=300, elem_id="image-seen")
                image_button = gr.Button("Explain", variant="primary", elem_id="explain-image")
                examples = sorted((ROOT / "examples").glob("image_*.png"))
                if examples:
                    gr.Examples([str(p) for p in examples], image)
                views = _result_views("image", "Density weight over image patches")
                image_button.click(image_view, image, [explanation, seen, *views], api_visibility="private")
                _export_row(explanation)
                _api_endpoint(explain_image, UploadedImage(type="filepath", image_mode=None, visible=False),
                              "explain_image")
            else:
                gr.Markdown(MISSING["image"])
        with gr.Tab("Audio"):
            if "audio" in MODELS:
                explanation = gr.State(None)
                gr.Markdown(f"Say one English letter name (A–Z). Silence around the speech is trimmed; speech longer "
                            f"than {WINDOW_S:g} s is cut to its loudest {WINDOW_S:g} s; clips up to "
                            f"{MAX_SECONDS / 60:.0f} minutes are accepted.")
                audio = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Clip", elem_id="audio-input")
                audio_button = gr.Button("Explain", variant="primary", elem_id="explain-audio")
                examples = sorted((ROOT / "examples").glob("audio_*.wav")) + sorted((ROOT / "examples").glob("audio_*.ogg"))
                if examples:
                    gr.Examples([str(p) for p in examples], audio)
                views = _result_views("audio", "Spectrogram and density weight per head over time")
                audio_button.click(audio_view, audio, [explanation, *views], api_visibility="private")
                _export_row(explanation)
                _api_endpoint(explain_audio, gr.Audio(type="filepath", visible=False), "explain_audio")
            else:
                gr.Markdown(MISSING["audio"])
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
