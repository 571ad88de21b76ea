"""What every frozen encoder returns: raw input -> the features a DAAM classifier's adapter turns into hidden states.

The encoders themselves live with their modality (daam.modalities.text, .image, .audio). Each returns an `Encoded`
batch: features with positions on axis `position_axis`,
a mask (batch, positions) with True = real position, and human-readable position labels.
Training caches these features once (the encoder never changes); see `daam.adapters`.
Encoders load from local files only; nothing is downloaded at run time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import DataError
from .explanation import Extras


@dataclass
class Encoded:
    features: torch.Tensor  # text (batch, layers, tokens, dim); image (batch, patches, channels); audio (batch, frames, mels)
    mask: torch.Tensor  # (batch, positions), True = real
    position_labels: list[list[str]]  # per item, one label per real position
    truncation_notes: list[str]  # per item, what the model did not see, in words ("" when it saw everything)
    extras: list[Extras | None] = field(default_factory=list)  # per item, what the view needs beyond the weights
    # The encoder's own input, requiring grad, when the features were computed keeping their graph back to it (an
    # image encoder called with keep_graph=True); None otherwise.
    graph_input: torch.Tensor | None = None
    # Each item's reference features (what ReferenceRelevance compares it with), shaped like features, when the
    # encoder computed them in the same batch as the items' own (an encoder called with with_reference=True).
    reference: torch.Tensor | None = None


def model_kind(model_type: str) -> str | None:
    """text, image or audio: what a Hugging Face model type reads, by transformers' own task mappings."""
    from transformers.models.auto import modeling_auto as auto

    if model_type in auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "image"
    if model_type in auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES or model_type in auto.MODEL_FOR_CTC_MAPPING_NAMES:
        return "audio"
    if model_type in auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        return "text"
    return None


def local_model(value: str | None, modality: str, builtin: str) -> str | None:
    """--encoder: None for the modality's built-in encoder (no value, or its name), else the absolute path of a local
    Hugging Face model directory that reads this modality. A DataError says what is wrong before anything loads."""
    if value is None or value == builtin:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"--encoder {value}: neither the built-in {modality} encoder ({builtin}) nor a directory")
    if not (path / "config.json").is_file():
        raise DataError(f"--encoder {value}: not a Hugging Face model directory (it has no config.json)")
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(str(path), local_files_only=True).model_type
    except Exception as error:  # an unknown model type, malformed JSON: transformers' errors vary
        raise DataError(f"--encoder {value}: its config.json is not a model transformers knows ({error})") from None
    kind = model_kind(model_type)
    if kind != modality:
        reads = f"reads {dict(text='text', image='images', audio='audio')[kind]}" if kind else "reads no text, images or audio"
        raise DataError(f"--encoder {value}: a {model_type} model {reads}; the data is {modality}")
    if not any(path.glob("*.safetensors")):
        raise DataError(f"--encoder {value}: no .safetensors weights (pickled weights are refused: unpickling can "
                        "run arbitrary code)")
    return str(path.resolve())
