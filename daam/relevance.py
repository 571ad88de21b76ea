"""Relevance methods: how much each position, and each head there, supported the predicted label.

One class per method, chosen by name (as captum's attribution classes and inseq's method registry are): a modality's
registry entry names its method (Modality.relevance) and every Explanation records which one filled it. A method
that needs something of the encoder says what (`needs`), so a modality whose encoder lacks it fails when the model
is built, not with a silent fall-back.

    pool              the pool's first-order account (DAAMClassifier.relevance): each position's share of the
                      pooled vector, dotted with the gradient of the predicted log-probability at the pool; heads sum
                      to their position. One forward pass, no backward.
    reference         exact at the pool against a reference input, what each position becomes when it is removed
                      (DAAMClassifier.relevance_against; the encoder's reference_features: for audio, the clip
                      silenced). The reference encoded too (in the inputs' own batch where the encoder can) and one
                      more DAAM pass.
    encoder_gradient  positions: gradient x input through the encoder (its input_relevance), for positions whose
                      removal reaches beyond their own features (an image cell moves its neighbours' features too);
                      heads: the pool's account. The encoder's forward keeps its graph; one backward pass
                      through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn


@dataclass
class Relevance:
    heads: torch.Tensor  # (batch, heads, positions)
    positions: torch.Tensor  # (batch, positions)


class RelevanceMethod:
    name: ClassVar[str]
    needs: ClassVar[str | None] = None  # the encoder method it calls, if any

    def check(self, encoder: nn.Module) -> None:
        """A ValueError when the encoder lacks what this method calls."""
        if self.needs is not None and not callable(getattr(encoder, self.needs, None)):
            raise ValueError(f"relevance method {self.name!r} needs an encoder with {self.needs}(); "
                             f"{type(encoder).__name__} has none")

    def encode(self, model, inputs: list):
        """Raw inputs -> the Encoded batch this method will read (the encoder's plain call unless it needs more)."""
        return model.encoder(inputs)

    def __call__(self, model, encoded, logits: torch.Tensor, inter, mask: torch.Tensor) -> Relevance:
        raise NotImplementedError


class PoolRelevance(RelevanceMethod):
    name = "pool"

    def __call__(self, model, encoded, logits, inter, mask) -> Relevance:
        heads = model.relevance(logits, inter, mask)
        return Relevance(heads, heads.sum(1))


class ReferenceRelevance(RelevanceMethod):
    name = "reference"
    needs = "reference_features"

    def encode(self, model, inputs: list):
        """Encoded with the references in the inputs' own batch, where the encoder can (encodes_reference): one encoder
        pass rather than two."""
        if getattr(model.encoder, "encodes_reference", False):
            return model.encoder(inputs, with_reference=True)
        return model.encoder(inputs)

    def __call__(self, model, encoded, logits, inter, mask) -> Relevance:
        reference = encoded.reference if encoded.reference is not None else model.encoder.reference_features(encoded)
        reference = reference.to(model.device).float()
        return Relevance(*model.relevance_against(logits, inter, mask, reference))


class EncoderGradientRelevance(RelevanceMethod):
    name = "encoder_gradient"
    needs = "input_relevance"

    def encode(self, model, inputs: list):
        """Encoded keeping the features' graph back to the pixels: the backward then needs no second forward."""
        return model.encoder(inputs, keep_graph=True)

    def __call__(self, model, encoded, logits, inter, mask) -> Relevance:
        predicted = logits.argmax(-1)

        def log_probability(features: torch.Tensor) -> torch.Tensor:  # one value per item
            return model(features, mask).log_softmax(-1).gather(1, predicted[:, None]).squeeze(1)

        positions = model.encoder.input_relevance(encoded, log_probability)
        return Relevance(model.relevance(logits, inter, mask), positions)


RELEVANCE_METHODS: dict[str, type[RelevanceMethod]] = {
    cls.name: cls for cls in (PoolRelevance, ReferenceRelevance, EncoderGradientRelevance)}


def build_relevance_method(name: str) -> RelevanceMethod:
    if name not in RELEVANCE_METHODS:
        raise ValueError(f"unknown relevance method {name!r}; known: {sorted(RELEVANCE_METHODS)}")
    return RELEVANCE_METHODS[name]()
