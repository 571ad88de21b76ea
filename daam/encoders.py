"""What every frozen encoder returns: raw input -> the features a DAAM classifier's adapter turns into hidden states.

The encoders themselves live with their modality (daam.modalities.text, .image, .audio). Each returns an `Encoded`
batch: features with positions on axis `position_axis`,
a mask (batch, positions) with True = real position, and human-readable position labels.
Training caches these features once (the encoder never changes); see `daam.adapters`.
Encoders load from local files only; nothing is downloaded at run time."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .explanation import Extras


@dataclass
class Encoded:
    features: torch.Tensor  # text (batch, layers, tokens, dim); image (batch, patches, channels); audio (batch, frames, mels)
    mask: torch.Tensor  # (batch, positions), True = real
    position_labels: list[list[str]]  # per item, one label per real position
    truncation_notes: list[str]  # per item, what the model did not see, in words ("" when it saw everything)
    extras: list[Extras | None] = field(default_factory=list)  # per item, what the view needs beyond the weights


