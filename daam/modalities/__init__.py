"""One entry per modality: everything the library, the training run and the app need to know of it.

Like transformers' Auto mappings, an entry names its code as "module:attribute" strings resolved on
use, so this module imports no torch and no modality pays for another's imports. Adding a modality is
one data module (its dataset and `task`), one module beside this one (its encoder and deletion case), and one
entry here; the training CLI, checkpoint
loading, model cards and the app's tabs all loop over MODALITIES. The view (`viz`) dispatches on the
entry's `extras` type, so a modality that reuses an existing one needs no new figure.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from ..explanation import AudioExtras, ImageExtras

INPUT_KINDS = ("text", "image", "audio")  # the inputs the app knows how to offer


@dataclass(frozen=True)
class Modality:
    name: str
    title: str  # the app's tab
    input_kind: str  # one of INPUT_KINDS
    positions: str  # what a position is, for figure titles: "tokens", "image patches", "time"
    encoder: str  # "module:Class" of its frozen encoder
    task: str  # "module:function": args -> Task, its training data (a dataset knows no architecture)
    build: str  # "module:function": args -> (encoder, the DAAMConfig fields it decides) for a training run
    card: str  # "module:function": (metrics, config) -> its model card's sections
    case: str = ""  # "module:Class": the deletion test's view of an input (daam.faithfulness); "": no such test
    answer: str = "answer"  # what a prediction is, in words ("spoken letter")
    min_confidence: float = 0.0  # below this top probability the app says no clear answer was found
    extras: type | None = None  # the Explanation.extras type its encoder fills
    train_defaults: dict = field(default_factory=dict)  # TrainSettings fields its run uses unless told otherwise
    architecture: dict = field(default_factory=dict)  # DAAMConfig fields its checkpoint is trained with, likewise
    relevance: str = "pool"  # its explanations' relevance method, a name in daam.relevance.RELEVANCE_METHODS
    # its out-of-distribution detector (daam.ood): the views it leaves out, and how the others' distances combine,
    # "max" (an input far in any one view) or "mean" (an input somewhat far in most of them)
    ood_skip: tuple[str, ...] = ()
    ood_combine: str = "max"

    def resolve(self, role: str) -> Any:
        """The object an entry names: resolve("encoder") -> the encoder class."""
        return resolve(getattr(self, role))


def resolve(name: str) -> Any:
    """The object a "module:attribute" string names, imported on use."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


# DAAM over a learned score per head, its gates the pooling weights, densities starting on both tails: chosen on
# validation accuracy over DAAM over every channel with mean pooling, for text and audio (the figures: README, "The
# mechanism comparison"). Images keep DAAM over every channel, which beats every attention pooling there.
SCORED_POSITIONS = {"position_mechanism": "daam_score", "pooling": "gate", "offset_spread": 1.5}

MODALITIES: dict[str, Modality] = {m.name: m for m in (
    Modality("text", "Text", "text", "tokens", encoder="daam.modalities.text:TextEncoder",
             case="daam.modalities.text:TextCase",
             task="daam.data.rotten_tomatoes:task", build="daam.modalities.text:build",
             card="daam.modalities.text:card_sections",
             train_defaults={"epochs": 6, "lr": 3e-3}, architecture=SCORED_POSITIONS,
             ood_skip=("encoder", "mixed"), ood_combine="mean"),  # why: daam.ood's docstring
    Modality("image", "Image", "image", "image patches", encoder="daam.modalities.image:ImageEncoder",
             case="daam.modalities.image:ImageCase",
             task="daam.data.fashion_mnist:task", build="daam.modalities.image:build",
             card="daam.modalities.image:card_sections", extras=ImageExtras,
             train_defaults={"epochs": 8, "lr": 3e-3}, relevance="encoder_gradient"),
    Modality("audio", "Audio", "audio", "time", encoder="daam.modalities.audio:SpeechEncoder",
             case="daam.modalities.audio:AudioCase",
             task="daam.data.spoken_letters:task", build="daam.modalities.audio:build",
             card="daam.modalities.audio:card_sections", extras=AudioExtras,
             answer="spoken letter", min_confidence=0.5,
             train_defaults={"epochs": 10, "lr": 3e-3}, architecture=SCORED_POSITIONS, relevance="reference"),
)}


SPEECH_THRESHOLD = 0.5  # below this speech probability (AudioExtras.speech_probability) a clip holds no speech


def no_answer(explanation) -> str | None:
    """Why an Explanation's predicted label should not be given as the answer: "not speech" (a clip the speech
    probe rejects), "low confidence" (below its modality's min_confidence), or None when it should."""
    speech = getattr(explanation.extras, "speech_probability", None)
    if speech is not None and speech < SPEECH_THRESHOLD:
        return "not speech"
    if max(explanation.probabilities) < modality(explanation.modality).min_confidence:
        return "low confidence"
    return None


def modality(name: str) -> Modality:
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; known: {sorted(MODALITIES)}")
    return MODALITIES[name]
