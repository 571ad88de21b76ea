"""What every tab of the app shares: the checkpoints it serves and their models, how a request runs (on a worker
thread, with a time limit, its errors turned into messages for the visitor; explanations of one checkpoint that wait
at the same time run as one batch, Batcher), and the named endpoints
/explain_<name> and /compare_<name>, one pair per served checkpoint.

By default the app serves the shipped checkpoints, checkpoints/<modality>/ for each modality of the registry;
`python app.py --checkpoint DIR ...` (or DAAM_CHECKPOINTS=DIR:DIR2) serves those instead, each named after its
directory and titled by its card."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import inspect
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import torch

from daam import InputError, load_pretrained
from daam.compare import compare_input, load_mechanisms
from daam.explanation import Explanation
from daam.modalities import MODALITIES, Modality

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MAX_TEXT_CHARS = 50_000  # the encoder reads 512 tokens; far longer text only costs tokenisation time
REQUEST_TIMEOUT_S = 30  # a request that takes longer gets a message instead of holding the page
CONCURRENT_REQUESTS = 8  # per event (app.py's queue): enough waiting at once for the batcher to have several to join
MAX_BATCH = 8  # inputs per explain_batch (README, "Many visitors": what an input of a batch costs)
WORKERS = concurrent.futures.ThreadPoolExecutor(max_workers=2 * CONCURRENT_REQUESTS, thread_name_prefix="daam-request")
log = logging.getLogger("daam-lens")


try:  # on Hugging Face ZeroGPU Spaces, inference must run inside spaces.GPU
    import spaces

    gpu, ZERO_GPU = spaces.GPU, True
except ImportError:
    ZERO_GPU = False

    def gpu(fn):
        return fn


# ---------------------------------------------------------------------------- checkpoints
@dataclass(frozen=True)
class Served:
    """A checkpoint the app serves: its directory, its modality (a name in the registry) and its tab's title."""

    directory: Path
    modality: str
    title: str


def shipped() -> dict[str, Served]:
    """CHECKPOINTS/<modality>/ for every modality of the registry, named and titled by it."""
    return {name: Served(CHECKPOINTS / name, name, entry.title) for name, entry in MODALITIES.items()}


def from_directories(directories: list[str]) -> dict[str, Served]:
    """The checkpoints in these directories, each named after its directory (made unique, [a-z0-9_]) and titled by
    its card; a ValueError naming any that is not a checkpoint."""
    out: dict[str, Served] = {}
    for raw in directories:
        directory = Path(raw).expanduser().resolve()
        try:
            modality = json.loads((directory / "config.json").read_text())["modality"]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{raw}: not a DAAM checkpoint (its config.json does not name a modality: {error})") from None
        if modality not in MODALITIES:
            raise ValueError(f"{raw}: a checkpoint of the {modality!r} modality, which this app does not know")
        base = re.sub(r"[^a-z0-9]+", "_", directory.name.lower()).strip("_") or "checkpoint"
        name = base if base not in out else f"{base}_{sum(n.startswith(base) for n in out) + 1}"
        out[name] = Served(directory, modality, card_title(directory) or directory.name)
    return out


def card_title(directory: Path) -> str | None:
    """The title a training run gave the card ("# DAAM text checkpoint: <title>"), if it has one."""
    card = directory / "README.md"
    lines = card.read_text().splitlines() if card.is_file() else []
    return next((line.split(": ", 1)[1].strip() for line in lines if line.startswith("# ") and ": " in line), None)


_chosen: dict[str, Served] | None = None  # serve(): python app.py --checkpoint DIR, before the app is built


def serve(directories: list[str]) -> None:
    """Serve the checkpoints in these directories instead of the shipped ones (before the app is built)."""
    global _chosen
    _chosen = from_directories(directories)
    loaded.cache_clear()


def served() -> dict[str, Served]:
    """The checkpoints the app serves, by name: those chosen with serve(), or the shipped ones of every modality
    registered now."""
    return _chosen if _chosen is not None else shipped()


def is_shipped(name: str) -> bool:
    """Whether a served checkpoint is the shipped one of its modality (whose examples and hints the app has)."""
    return served()[name].directory == CHECKPOINTS / name


def entry(name: str) -> Modality:
    """The registry entry of a served checkpoint's modality."""
    return MODALITIES[served()[name].modality]


def load_checkpoints(checkpoints: dict[str, Served], device: str = "cpu") -> tuple[dict, dict[str, str]]:
    """Every checkpoint: (models by name, a message for each one that is missing)."""
    models, missing = {}, {}
    for name, checkpoint in checkpoints.items():
        try:
            models[name] = load_pretrained(checkpoint.directory, device=device)
        except FileNotFoundError:
            missing[name] = (f"No {name} checkpoint is installed yet (expected "
                             f"{checkpoint.directory.relative_to(ROOT) if checkpoint.directory.is_relative_to(ROOT) else checkpoint.directory}/model.safetensors).")
        except (ValueError, OSError, KeyError, TypeError, RuntimeError) as error:  # a broken checkpoint
            log.warning("the %s checkpoint could not be loaded: %s", name, error)
            missing[name] = f"The {name} checkpoint could not be loaded: {error}"
    return models, missing


@functools.cache
def loaded() -> tuple[dict, dict[str, str]]:
    """The checkpoints, loaded once, each with its frozen encoder built (not during the first request)."""
    models, missing = load_checkpoints(served(), device=DEVICE)
    for model in models.values():
        model.encoder
    return models, missing


def model_for(name: str):
    models, missing = loaded()
    if name not in models:
        raise InputError(missing.get(name, f"No {name} model."))
    return models[name]


def user_errors(fn):
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
def check_input(kind: str, value):
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


class Batcher:
    """Explains waiting requests of the same model together, on one thread of its own.

    It takes the oldest waiting request and every other one waiting for the same model (up to MAX_BATCH) into one
    explain_batch: one encoder pass serves several visitors, and as only this thread runs the models, the torch
    threads of two requests never contend for the same cores. Each request prepared its input in its own thread
    (DAAMClassifier.prepare_input: an unreadable file fails there, alone); a batch that fails even so is explained
    again one input at a time, so the failing input is answered with its own message and the others with their
    results. A request that gave up waiting (REQUEST_TIMEOUT_S) is dropped before it is run."""

    def __init__(self, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._waiting: list[tuple[object, object, concurrent.futures.Future]] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, model, value) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        with self._changed:
            self._waiting.append((model, value, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="daam-batcher", daemon=True)
                self._thread.start()
            self._changed.notify()
        return future

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._waiting:
                    self._changed.wait()
                model = self._waiting[0][0]
                batch = [w for w in self._waiting if w[0] is model][:self.max_batch]
                self._waiting = [w for w in self._waiting if not any(w is b for b in batch)]
            self._explain(model, [(value, f) for _, value, f in batch if f.set_running_or_notify_cancel()])

    @classmethod
    def _explain(cls, model, batch: list[tuple[object, concurrent.futures.Future]]) -> None:
        if not batch:
            return
        try:
            explanations = model.explain_batch([value for value, _ in batch])
        except Exception as error:  # noqa: BLE001 — handed to the request that sent the input
            if len(batch) == 1:
                batch[0][1].set_exception(error)
            else:  # whose input was it? each alone answers that
                for item in batch:
                    cls._explain(model, [item])
            return
        for (_, future), e in zip(batch, explanations):
            future.set_result(e)


BATCHER = Batcher()


@gpu
def _explain_on_zero_gpu(model, value) -> Explanation:
    return model.explain(value)


def explain(name: str, value) -> Explanation:
    model = model_for(name)  # a missing checkpoint is the first thing to say
    value = model.prepare_input(check_input(entry(name).input_kind, value))  # here: off the batcher's thread
    if ZERO_GPU:  # ZeroGPU lends its device to the request's own call, not to another thread
        return _explain_on_zero_gpu(model, value)
    future = BATCHER.submit(model, value)
    try:
        return future.result(timeout=REQUEST_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        future.cancel()  # not run if it is still waiting
        raise


@functools.cache
def _mechanisms(name: str) -> dict:
    """DAAM and the comparison's trained heads for a checkpoint, loaded on first use (small files)."""
    mechanisms = load_mechanisms(served()[name].directory, model_for(name))
    if len(mechanisms) < 2:
        raise InputError(f"No comparison is installed for the {name} checkpoint yet "
                         f"(python -m daam.compare --checkpoint {served()[name].directory} makes one).")
    return mechanisms


@gpu
def _compare(name: str, value) -> dict:
    model_for(name)  # a missing checkpoint is the first thing to say
    value = check_input(entry(name).input_kind, value)
    return compare_input(_mechanisms(name), value) | {"modality": served()[name].modality}


INPUT_NAMES = {"text": "a sentence", "image": "an image file (PNG, JPEG, GIF, WebP, BMP, TIFF)",
               "audio": "an audio file (WAV, FLAC, OGG)"}  # by input kind, for the endpoints' descriptions


ENDPOINTS = {  # verb -> (what it does, its description with {input} and {name} to fill)
    "explain": (lambda name, value: explain(name, value).to_dict(),
                "Explain {input} with the {name} checkpoint: the Explanation as JSON."),
    "compare": (_compare,
                "Every mechanism of the {name} comparison on {input}: rows of name, predicted_label, probabilities, "
                "position_weights."),
}


@functools.cache
def endpoint(verb: str, name: str) -> Callable[[str], dict]:
    """The named endpoint /<verb>_<name> of a served checkpoint (a verb in ENDPOINTS), made when the app is built:
    one parameter, called after its input kind (text, image or audio: what gr.api and
    gradio_client show), a string (the text, or an uploaded file's path)."""
    work, doc = ENDPOINTS[verb]
    kind = entry(name).input_kind

    def answer(value: str) -> dict:
        return work(name, value)

    answer.__name__ = answer.__qualname__ = f"{verb}_{name}"
    answer.__doc__ = doc.format(input=INPUT_NAMES[kind], name=name)
    answer.__annotations__ = {kind: str, "return": dict}
    answer.__signature__ = inspect.Signature([inspect.Parameter(kind, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                                annotation=str)], return_annotation=dict)
    return user_errors(answer)
