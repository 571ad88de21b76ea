"""DAAM Lens: a Gradio app that shows what Density Adaptive Attention does with your input.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT to change)

Thin glue: inputs -> daam (inference, plain data) -> viz (Plotly figures). One tab per loaded
checkpoint (daam.modalities), then the Playground and the Models tab. Checkpoints load on first use
(`main()` loads them before serving), so importing this module is cheap."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import inspect
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import gradio as gr
import torch
from huggingface_hub import ModelCard

import viz
from daam import InputError, load_pretrained
from daam.audio import MAX_SECONDS, WINDOW_S
from daam.compare import compare_input, load_comparison, load_mechanisms
from daam.explanation import Explanation
from daam.faithfulness import check as deletion_check
from daam.modalities import MODALITIES, no_answer
from daam.playground import SAMPLE, head_parameters, shape_head
from viz.gallery import figures_html, html_page

ROOT = Path(__file__).resolve().parent
CHECKPOINTS = ROOT / "checkpoints"
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


# ---------------------------------------------------------------------------- checkpoints
def load_checkpoints(root: Path, device: str = "cpu") -> tuple[dict, dict[str, str]]:
    """Every checkpoint under root/<modality>/: (models by modality, a message for each one that is missing)."""
    models, missing = {}, {}
    for name in MODALITIES:
        directory = Path(root) / name
        try:
            models[name] = load_pretrained(directory, device=device)
        except FileNotFoundError:
            missing[name] = f"No {name} checkpoint is installed yet (expected checkpoints/{name}/model.safetensors)."
        except (ValueError, OSError, KeyError, TypeError, RuntimeError) as error:  # a broken checkpoint
            log.warning("the %s checkpoint could not be loaded: %s", name, error)
            missing[name] = f"The {name} checkpoint could not be loaded: {error}"
    return models, missing


@functools.cache
def loaded() -> tuple[dict, dict[str, str]]:
    """The checkpoints, loaded once, each with its frozen encoder built (not during the first request)."""
    models, missing = load_checkpoints(CHECKPOINTS, device=DEVICE)
    for model in models.values():
        model.encoder
    return models, missing


def _model(modality: str):
    models, missing = loaded()
    if modality not in models:
        raise InputError(missing.get(modality, f"No {modality} model."))
    return models[modality]


def _user_errors(fn):
    """InputError becomes a gr.Error with its message; anything else a generic one and a logged traceback.

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
        except InputError as error:
            log.info("%s: bad input: %s", fn.__name__, error)  # one line: the user has been told
            raise gr.Error(str(error)) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error("Something went wrong while explaining this input; please try another one.") from None
    return wrapped


# ---------------------------------------------------------------------------- inference
def _check_input(kind: str, value):
    """What the app refuses before the model sees it; daam itself checks the rest."""
    if kind == "text":
        if not isinstance(value, str):
            raise InputError("Please send the text as a string.")
        if len(value) > MAX_TEXT_CHARS:
            raise InputError(f"The text has {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,} "
                             "(the encoder reads only the first 512 tokens anyway).")
    elif value is None:
        raise InputError("Please upload, paste or take a picture first." if kind == "image"
                         else "Please upload or record a clip first.")
    return value


@gpu
def _explain(modality: str, value) -> Explanation:
    model = _model(modality)  # a missing checkpoint is the first thing to say
    return model.explain(_check_input(MODALITIES[modality].input_kind, value))


@functools.cache
def _mechanisms(modality: str) -> dict:
    """DAAM and the comparison's trained heads for a modality, loaded on first use (small files)."""
    mechanisms = load_mechanisms(CHECKPOINTS / modality, _model(modality))
    if len(mechanisms) < 2:
        raise InputError(f"No comparison is installed for the {modality} checkpoint yet "
                         f"(python -m daam.compare {modality} makes one).")
    return mechanisms


@gpu
def _compare(modality: str, value) -> dict:
    _model(modality)  # a missing checkpoint is the first thing to say
    value = _check_input(MODALITIES[modality].input_kind, value)
    return compare_input(_mechanisms(modality), value) | {"modality": modality}


INPUT_NAMES = {"text": "a sentence", "image": "an image file (PNG, JPEG, GIF, WebP, BMP, TIFF)",
               "audio": "an audio file (WAV, FLAC, OGG)"}  # by input kind, for the endpoints' descriptions


def _endpoint(verb: str, name: str, work: Callable[[str, object], dict], doc: str) -> Callable[[str], dict]:
    """The named endpoint /<verb>_<name> of a modality: one parameter, called after its input kind (text, image or
    audio: what gr.api and gradio_client show), a string (the text, or an uploaded file's path). doc: its
    description, with {input} and {name} to fill."""
    kind = MODALITIES[name].input_kind

    def endpoint(value: str) -> dict:
        return work(name, value)

    endpoint.__name__ = endpoint.__qualname__ = f"{verb}_{name}"
    endpoint.__doc__ = doc.format(input=INPUT_NAMES[kind], name=name)
    endpoint.__annotations__ = {kind: str, "return": dict}
    endpoint.__signature__ = inspect.Signature([inspect.Parameter(kind, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                                  annotation=str)], return_annotation=dict)
    return _user_errors(endpoint)


API = {name: _endpoint("explain", name, lambda name, value: _explain(name, value).to_dict(),
                       "Explain {input} with the {name} checkpoint: the Explanation as JSON.")
       for name in MODALITIES}  # /explain_<modality>
COMPARE_API = {name: _endpoint("compare", name, _compare, "Every mechanism of the {name} comparison on {input}: rows "
                               "of name, predicted_label, probabilities, position_weights.")
               for name in MODALITIES}  # /compare_<modality>


# ---------------------------------------------------------------------------- views
def _head_choices(heads: int) -> list[str]:
    return [MEAN_OF_HEADS] + [f"head {h}" for h in range(heads)]


def _head(choice: str | None) -> int | None:
    """The head a dropdown choice names; None for the mean of heads."""
    return None if choice in (None, MEAN_OF_HEADS) else int(choice.split()[-1])


def _ms(value: float) -> str:
    return "under 1 ms" if value < 1 else f"{value:.0f} ms"


def _summary(e: Explanation) -> str:
    note = f" — {e.truncation_note}." if e.truncation_note else ""
    confidence = max(e.probabilities)
    verdict = f"**{e.predicted_label}** ({confidence:.1%})"
    entry, reason = MODALITIES[e.modality], no_answer(e)
    if reason == "not speech":  # a tone, noise, music: say so rather than name a letter
        verdict = (f"**No {entry.answer} found** — this does not sound like speech (speech probability "
                   f"{e.extras.speech_probability:.1%}; the label it would otherwise give: {e.predicted_label}, {confidence:.1%})")
    elif reason == "low confidence":
        verdict = (f"**No clear {entry.answer} found** — the best guess, {e.predicted_label}, "
                   f"has only {confidence:.1%} (answers below {entry.min_confidence:.0%} are not trusted)")
    return (f"{verdict}{note}  \nencoder {_ms(e.timings['encoder_ms'])}, DAAM {_ms(e.timings['daam_ms'])}")


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
FROM_SCRATCH = "from scratch"
# Slider (name, low, high) and the scratch start: a density on each of the sample's two modes (z = -0.8 and
# +1.1), and a lighter one out at z = 3. The mixture keeps both modes; the product collapses to one Gaussian.
PLAYGROUND_SLIDERS = (("offset", -4, 4), ("scale", 0.05, 3), ("weight", 0.001, 1))
SCRATCH = {"offset": [-0.8, 1.1, 3.0], "scale": [0.35, 0.45, 0.5], "weight": [1.0, 1.0, 0.3]}
NEGLIGIBLE_GATE = 1e-3  # a gate whose peak is below this lets nothing through


@functools.cache
def playground_heads() -> dict[str, tuple]:
    """Dropdown label -> (attention module, head): every density head of the loaded checkpoints."""
    return {f"{name}: {stage} stage, head {h}": (module, h) for name, model in loaded()[0].items()
            for stage, module in model.density_stages().items() for h in range(module.num_heads)}


@_user_errors
def playground(mode: str, *values: float):
    k = PLAYGROUND_DENSITIES
    shaped = shape_head(mode, values[:k], values[k:2 * k], values[2 * k:])
    peak = float(shaped.density.curve.max())
    if mode == "product":
        c = shaped.density.collapsed
        text = (f"**Product mode** is one Gaussian, whatever the sliders: centre {c['offset'][0]:.2f}, scale "
                f"{c['scale'][0]:.2f}.")
    else:
        text = f"**Mixture mode**: the gate has {shaped.peaks} peak{'s' if shaped.peaks != 1 else ''}."
    if peak < NEGLIGIBLE_GATE:
        text += f" Its highest value is {peak:.1e}: it is practically zero everywhere and lets nothing through."
    elif mode == "product":
        text += f" Its peak is {peak:.2f}."
    return text, viz.mixture_curves(shaped.density, [shaped.z], title="The gate you shaped"), viz.gated_sample(SAMPLE, shaped.gate)


@_user_errors
def playground_start(source: str):
    """Slider values from a checkpoint head (or the scratch defaults)."""
    if source not in playground_heads():
        return [v for name, _, _ in PLAYGROUND_SLIDERS for v in SCRATCH[name]]
    params = head_parameters(*playground_heads()[source])
    if any(len(v) != PLAYGROUND_DENSITIES for v in params.values()):
        raise InputError(f"This head has {len(params['offsets'])} densities; the playground shows {PLAYGROUND_DENSITIES}.")
    return [round(min(max(float(v), lo), hi), 2) for values, (_, lo, hi) in zip(params.values(), PLAYGROUND_SLIDERS)
            for v in values]  # the sliders' own step: no 8-digit floats


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


def _input(name: str, compare: bool = False):
    """The input widget of a modality's input kind, and the widgets that show what the model saw (None in the
    Compare tab, whose widgets are named compare-<modality>-...)."""
    kind = MODALITIES[name].input_kind
    if compare:
        elem_id = f"compare-{name}-input"
        if kind == "text":
            return gr.Textbox(label="Sentence (Enter to compare)", lines=1, max_lines=12, max_length=MAX_TEXT_CHARS,
                              elem_id=elem_id, placeholder="A warm, funny and beautifully acted film."), None
        if kind == "image":
            return UploadedImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                 label="Image", elem_id=elem_id, height=260), None
        return gr.Audio(type="filepath", sources=["upload", "microphone"], label="Clip", elem_id=elem_id), None
    if kind == "text":  # one line that grows: Enter explains, Shift+Enter starts a new line
        return gr.Textbox(label="Sentence (Enter to explain, Shift+Enter for a new line)", lines=1, max_lines=12,
                          max_length=MAX_TEXT_CHARS, elem_id=f"{name}-input",
                          placeholder="A warm, funny and beautifully acted film."), None
    if kind == "image":
        gr.Markdown("One garment, ideally on a plain background. Photos (dark on light) are inverted, "
                    "cropped and centred to look like Fashion-MNIST: *what the model sees* shows the result.")
        with gr.Row():
            image = UploadedImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                  label="Image", elem_id=f"{name}-input", height=300)
            seen = gr.Image(label="What the model sees", interactive=False, height=300, elem_id=f"{name}-seen")
        return image, seen
    gr.Markdown(f"Say one English letter name (A–Z). Silence around the speech is trimmed; speech longer "
                f"than {WINDOW_S:g} s is cut to its loudest {WINDOW_S:g} s; clips up to "
                f"{MAX_SECONDS / 60:.0f} minutes are accepted.")
    return gr.Audio(type="filepath", sources=["upload", "microphone"], label="Clip", elem_id=f"{name}-input"), None


def _api_input(name: str):
    """A hidden input for the named file endpoint, so Gradio's upload checks apply to API calls too."""
    kind = MODALITIES[name].input_kind
    return (UploadedImage(type="filepath", image_mode=None, visible=False) if kind == "image"
            else gr.Audio(type="filepath", visible=False))


def _asked(button: gr.Button, source) -> list:
    """The events that ask for a result: the button, and Enter in a text box."""
    return [button.click] + ([source.submit] if isinstance(source, gr.Textbox) else [])


def _result_views(name: str) -> dict[str, gr.components.Component]:
    """What every modality tab shows, keyed like viz.explanation_figures' figures."""
    entry = MODALITIES[name]
    tokens = entry.input_kind == "text"
    relevance = bool(entry.case)  # shown as the main view where the deletion test checks it
    views = {"summary": gr.Markdown(elem_id=f"{name}-summary"), "prediction": gr.Plot(label="Prediction")}
    if tokens:
        views["highlighted_text"] = gr.HTML(label="Highlighted text")
    views["positions"] = gr.Plot(label=f"Relevance over {entry.positions}" if relevance
                                 else f"Density weight per head over {entry.positions}", elem_id=f"{name}-positions")
    if relevance:
        pooled_by_gates = _model(name).config.pooling == "gate"
        with gr.Accordion("Raw gates: each head's pooling weight on each position" if pooled_by_gates else
                          "Raw gates: what each head lets through (not what drove the prediction)", open=False):
            views["gates"] = gr.Plot(label=f"Density weight per head over {entry.positions}", elem_id=f"{name}-gates")
    with gr.Row():  # side by side on a wide page; one above the other when each would be under 560 px
        for stage in ("positions", "layers"):
            with gr.Column(min_width=560):
                views[f"density_{stage}"] = gr.Plot(label=f"Densities: {stage} stage", elem_id=f"{name}-density-{stage}")
    views["layer_importance"] = gr.Plot(label="Layer importance")
    return views


def _render(views: dict, e: Explanation, head_choice: str | None, normalise: bool) -> dict:
    figures = viz.explanation_figures(e, head=_head(head_choice), normalise_per_head=normalise)
    return {component: _summary(e) if key == "summary" else figures[key] for key, component in views.items()}


def _modality_tab(name: str, examples: list[tuple]) -> None:
    """A modality's tab: its input, Explain, examples, the figures, and export."""
    kind = MODALITIES[name].input_kind
    explanation = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            source, seen = _input(name)
        with gr.Column(scale=1, min_width=200):
            head = gr.Dropdown(_head_choices(0), value=MEAN_OF_HEADS, label="Head", elem_id="head" if kind == "text"
                               else f"{name}-head", info="every view below shows this head, or all of them")
            normalise = gr.Checkbox(label="Normalise each head's row to its own range (heatmaps)",
                                    visible=kind == "text")
            button = gr.Button("Explain", variant="primary", elem_id=f"explain-{name}")
    if examples:
        # Pictures show themselves as thumbnails; sentences are their own labels; clips need words.
        gr.Examples([value for value, _ in examples], source,
                    example_labels=None if kind == "image" else [label for _, label in examples])
    views = _result_views(name)

    def cleared(message: str) -> dict:
        """After a bad input: its message where the result was, and no result left that looks current."""
        out = {explanation: None, head: gr.update(choices=_head_choices(0), value=MEAN_OF_HEADS)}
        out |= {component: None for component in views.values()}
        out[views["summary"]] = f"**Nothing explained** — {message}"
        if seen is not None:
            out[seen] = None
        if kind != "text":  # an unreadable upload is of no further use; typed text is never thrown away
            out[source] = None
        return out

    @_user_errors
    def explain(value, head_choice: str, normalise_each: bool, progress: gr.Progress) -> dict:
        progress(0.1, desc="explaining")
        e = _explain(name, value)
        progress(0.8, desc="drawing")
        choice = head_choice if head_choice in _head_choices(e.heads) else MEAN_OF_HEADS
        out = {explanation: e.to_dict(), **_render(views, e, choice, normalise_each),
               head: gr.update(choices=_head_choices(e.heads), value=choice)}
        if seen is not None:
            out[seen] = e.extras.image
        return out

    def show(value, head_choice: str, normalise_each: bool, progress=gr.Progress()) -> dict:
        try:
            return explain(value, head_choice, normalise_each, progress)
        except gr.Error as error:
            gr.Warning(error.message)
            return cleared(error.message)

    @_user_errors
    def rerender(saved: dict | None, head_choice: str, normalise_each: bool) -> dict:
        if saved is None:  # nothing to redraw yet: the controls simply wait for a result
            return {component: gr.skip() for component in views.values()}
        return _render(views, Explanation.from_dict(saved), head_choice, normalise_each)

    outputs = [explanation, head, source, *views.values()] + ([seen] if seen is not None else [])
    gr.on(_asked(button, source), show, [source, head, normalise], outputs, api_visibility="private")
    gr.on([head.change, normalise.change], rerender, [explanation, head, normalise], list(views.values()),
          api_visibility="private", trigger_mode="always_last")
    if MODALITIES[name].case:
        _trust_panel(name, source)
    with gr.Row():
        export_button = gr.Button("Export JSON and figures")
        files = gr.File(label="Downloads", file_count="multiple", visible=False,  # shown once there is something
                        elem_id=f"{name}-downloads")
    export_button.click(_user_errors(lambda saved: gr.update(value=export(saved), visible=True)), explanation, files,
                        api_visibility="private")
    if kind != "text":
        hidden = gr.Button(visible=False)
        hidden.click(API[name], _api_input(name), gr.JSON(visible=False), api_name=f"explain_{name}")


def _trust_verdict(result: dict) -> str:
    """The deletion test at 20% of the units, in words."""
    at = result["fractions"].index(0.2)
    ours, chance = result["relevance"][at], result["random"][at]
    unit = result["unit"]
    said = (f"Removing the 20% most relevant {unit} lowers the probability of **{result['predicted_label']}** by "
            f"{ours:.3f}; removing random {unit} lowers it by {chance:.3f}")
    if ours > chance + 0.05:
        return said + ": for this input, the explanation points at what the prediction depends on."
    return said + ": **no better than random** — for this input, do not read much into the relevance."


def _trust_panel(name: str, source) -> None:
    """"Can I trust this?": the deletion test on the current input, on demand."""
    what = "sentence" if MODALITIES[name].input_kind == "text" else MODALITIES[name].input_kind
    with gr.Accordion(f"Can I trust this? Run the deletion test on this {what}", open=False):
        button = gr.Button("Run the deletion test", elem_id=f"{name}-trust")
        verdict = gr.Markdown(elem_id=f"{name}-trust-verdict")
        plot = gr.Plot(label="Deletion test")

    @_user_errors
    def run(value, progress=gr.Progress()) -> dict:
        progress(0.2, desc="removing parts of the input and re-running the model")
        result = deletion_check(_model(name), _check_input(MODALITIES[name].input_kind, value))
        return {verdict: _trust_verdict(result),
                plot: viz.deletion_check(result["fractions"], result["relevance"], result["random"], unit=result["unit"])}

    button.click(run, source, [verdict, plot], api_visibility="private")


def _examples(name: str) -> list[tuple[str, str]]:
    """(input, button label) pairs: the sentences themselves; for files, what they are and the expected answer."""
    from daam.examples import example_inputs, example_label

    inputs = example_inputs(name)
    if MODALITIES[name].input_kind == "text":
        return [(text, text) for text in inputs]
    return [(path, example_label(Path(path))) for path in inputs]


def _playground_tab() -> tuple:
    gr.Markdown("Shape one head's gate by hand. A **mixture** can keep several ranges of z; the original "
                "**product** of Gaussians always collapses to a single Gaussian.")
    with gr.Row():
        source = gr.Dropdown([FROM_SCRATCH, *playground_heads()], value=FROM_SCRATCH, label="Start from")
        mode = gr.Radio(["mixture", "product"], value="mixture", label="Mode", elem_id="mode")
    sliders = []
    with gr.Row():
        for name, lo, hi in PLAYGROUND_SLIDERS:
            with gr.Column():
                for k in range(PLAYGROUND_DENSITIES):
                    sliders.append(gr.Slider(lo, hi, value=SCRATCH[name][k], step=0.01, label=f"density {k} {name}",
                                             elem_id=f"{name}-{k}"))
    outputs = [gr.Markdown(elem_id="playground-verdict"), gr.Plot(label="Gate over z", elem_id="playground-curve"),
               gr.Plot(label="A sample input, gated")]
    gr.on([control.change for control in [mode, *sliders]], playground, [mode, *sliders], outputs,
          api_visibility="private", trigger_mode="always_last")
    source.change(playground_start, source, sliders, api_visibility="private")
    return mode, sliders, outputs


COMPARE_COLUMNS = ["mechanism", "accuracy", "± sd", "macro-F1", "params", "ms/item", "drop @20%"]


def _comparison_rows(comparison: dict):
    """The comparison table, its figures shown to fixed decimals (as numbers, so that sorting by a column works)."""
    import pandas as pd

    rows = [[r["name"], r["accuracy_mean"], r["accuracy_sd"], r["macro_f1"], r["parameters"], r["ms_per_item"],
             r["faithfulness"]] for r in comparison["mechanisms"]]
    decimals = {"accuracy": 4, "± sd": 4, "macro-F1": 4, "ms/item": 4, "drop @20%": 3}
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS).style.format(
        {column: f"{{:.{places}f}}" for column, places in decimals.items()})


def _comparison_summary(comparison: dict) -> str:
    """Where DAAM stands, in words: what beats it on accuracy and on the deletion test."""
    rows = comparison["mechanisms"]
    daam = next(r for r in rows if r["name"] == "daam")
    better = [r["name"] for r in rows if r["accuracy_mean"] > daam["accuracy_mean"]]
    f = comparison["faithfulness"]
    sharper = [r["name"] for r in rows if r["faithfulness"] > daam["faithfulness"]]
    accuracy = (f"DAAM loses on accuracy to {', '.join(better)}." if better
                else "No mechanism beats DAAM's test accuracy.")
    deletion = (f"On the deletion test (*drop @20%*), removing the 20% of {f['unit']} a mechanism weights most "
                f"lowers its prediction by the figure in the table (random {f['unit']}: {f['random']:.3f}); "
                + (f"{', '.join(sharper)} point at what matters more than DAAM's raw gate does." if sharper
                   else "DAAM's raw gate points at what matters most."))
    return (f"**{comparison['task']}** — {len(rows)} mechanisms in DAAM's place, same features, split and budget, "
            f"seeds {comparison['seeds']} (mean ± sd on the test split). {accuracy} {deletion} "
            f"Reproduce: `{comparison['command']}`.")


def _compare_verdict(result: dict) -> str:
    rows = result["rows"]
    daam = rows[0]["predicted_label"]
    agree = sum(r["predicted_label"] == daam for r in rows[1:])
    return f"DAAM predicts **{daam}**; {agree} of the other {len(rows) - 1} mechanisms agree."


def _compare_tab(models: dict, missing: dict) -> None:
    gr.Markdown("DAAM beside other attention and pooling mechanisms trained in its place on the same frozen "
                "features: accuracy, cost, convergence, and where each one looks on your own input.")
    with gr.Tabs():
        for name, entry in MODALITIES.items():
            with gr.Tab(entry.title, elem_id=f"compare-{name}"):
                comparison = load_comparison(CHECKPOINTS / name) if name in models else None
                if comparison is None:
                    gr.Markdown(missing.get(name) or f"No comparison for this checkpoint yet: "
                                f"`python -m daam.compare {name}` makes one.")
                    continue
                gr.Markdown(_comparison_summary(comparison))
                gr.Dataframe(_comparison_rows(comparison), interactive=False,
                             elem_id=f"compare-{name}-table", label="Mechanisms (sort by a column from its header's ⋮ menu)")
                with gr.Row():
                    with gr.Column(min_width=400):
                        gr.Plot(viz.accuracy_vs_cost(comparison["mechanisms"]))
                    with gr.Column(min_width=400):
                        gr.Plot(viz.mechanism_curves(comparison["mechanisms"]))
                _compare_input(name)


def _compare_input(name: str) -> None:
    """The per-input comparison: one input, every mechanism's prediction and weights on one scale."""
    kind = MODALITIES[name].input_kind
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            source, _ = _input(name, compare=True)
        with gr.Column(scale=1, min_width=200):
            button = gr.Button("Compare on this input", variant="primary", elem_id=f"compare-{name}-run")
    examples = _examples(name)
    if examples:
        gr.Examples([value for value, _ in examples], source,
                    example_labels=None if kind == "image" else [label for _, label in examples])
    verdict = gr.Markdown(elem_id=f"compare-{name}-verdict")
    plot = gr.Plot(label="Where each mechanism looks", elem_id=f"compare-{name}-weights")

    def show(value) -> dict:
        try:
            result = COMPARE_API[name](value)
        except gr.Error as error:
            gr.Warning(error.message)
            return {verdict: f"**Nothing compared** — {error.message}", plot: None}
        return {verdict: _compare_verdict(result), plot: viz.mechanism_weights(result, kind=kind)}

    gr.on(_asked(button, source), show, source, [verdict, plot], api_visibility="private")
    if kind != "text":
        hidden = gr.Button(visible=False)
        hidden.click(COMPARE_API[name], _api_input(name), gr.JSON(visible=False), api_name=f"compare_{name}")


CARD_SUMMARY_SECTIONS = 2  # a card's first sections (task and data, results) show; the rest fold away


def _card_parts(path: Path) -> tuple[str, str]:
    """A model card without its YAML header, split into the summary and the details."""
    sections = ModelCard.load(path).text.split("\n## ")
    keep = CARD_SUMMARY_SECTIONS + 1  # the title and intro come before the first section
    return "\n## ".join(sections[:keep]), "## " + "\n## ".join(sections[keep:]) if len(sections) > keep else ""


def _models_tab(models: dict, missing: dict) -> None:
    with gr.Tabs():
        for name, entry in MODALITIES.items():
            with gr.Tab(f"{entry.title} checkpoint"):
                if name not in models:
                    gr.Markdown(missing[name])
                    continue
                directory = CHECKPOINTS / name
                summary, details = _card_parts(directory / "README.md")
                gr.Markdown(summary)
                if details:
                    with gr.Accordion("Details: heads, faithfulness, encoder, how to reproduce, limitations", open=False):
                        gr.Markdown(details)
                curves = directory / "training_curves.json"
                if curves.exists():
                    with gr.Accordion("Training curves", open=False):
                        gr.Plot(viz.training_curves(json.loads(curves.read_text())))


def build() -> gr.Blocks:
    models, missing = loaded()
    with gr.Blocks(title="DAAM Lens") as demo:
        gr.Markdown("# DAAM Lens\nSee what **Density Adaptive Attention** does with your input: each head gates "
                    "every feature by a learned mixture of Gaussians of its z-score.")
        for name, entry in MODALITIES.items():
            with gr.Tab(entry.title):
                if name in models:
                    _modality_tab(name, _examples(name))
                else:
                    gr.Markdown(missing[name])
        with gr.Tab("Compare"):
            _compare_tab(models, missing)
        with gr.Tab("Playground"):
            mode, sliders, outputs = _playground_tab()
        with gr.Tab("Models"):
            _models_tab(models, missing)
        demo.load(playground, [mode, *sliders], outputs, api_visibility="private")
        for name, entry in MODALITIES.items():  # text endpoints take a string; file ones are wired in their tabs
            if entry.input_kind == "text":
                gr.api(API[name], api_name=f"explain_{name}")
                gr.api(COMPARE_API[name], api_name=f"compare_{name}")
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
