"""The deletion test: remove what an explanation ranks highest, re-run the model, and see the prediction fall.

An input is cut into units (a sentence into its words; a picture into the 7x7 cells the model sees, a clip into
the encoder's 20 ms frames: both exactly their positions). `deletion_curves` removes the top-scored fraction of units (and, for insertion, keeps
only them) and measures the predicted class's probability; a faithful ranking makes it fall fast. Used by
benchmarks/bench_faithfulness.py on held-out data and by the app's "Can I trust this?" panel on one input."""

from __future__ import annotations

import numpy as np
import torch

from .images import prepare_image
from .modalities import modality

FRACTIONS = (0.1, 0.2, 0.3, 0.5)
IG_STEPS = 16


class TextCase:
    """A sentence cut into whitespace words; a subset of words is kept by a 0/1 mask over them."""

    unit = "words"

    def __init__(self, model, text: str) -> None:
        self.model, self.words = model, model.encoder.check(text).split()
        self.source = " ".join(self.words)
        tokens = model.encoder.tokenizer([self.words], is_split_into_words=True, truncation=True,
                                         max_length=model.encoder.max_length)
        self.word_of_token = np.array([-1 if w is None else w for w in tokens.word_ids(0)])

    @property
    def units(self) -> int:
        return len(self.words)

    def per_unit(self, token_scores: np.ndarray) -> np.ndarray:
        """Token scores summed into their words (special tokens belong to none)."""
        if len(token_scores) != len(self.word_of_token):
            raise ValueError(f"{len(token_scores)} token scores for {len(self.word_of_token)} tokens")
        out = np.zeros(self.units)
        real = self.word_of_token >= 0
        np.add.at(out, self.word_of_token[real], token_scores[real])
        return out

    def inputs(self, keeps: np.ndarray) -> list[str]:
        return [" ".join(w for w, k in zip(self.words, keep) if k) or "." for keep in keeps]

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        encoded = self.model.encoder(self.inputs(keeps))
        return self.model(encoded.features, encoded.mask).softmax(-1).numpy()

    def integrated_gradients(self, target: int) -> np.ndarray:
        from captum.attr import LayerIntegratedGradients

        encoder = self.model.encoder
        batch = encoder.tokenizer([" ".join(self.words)], return_tensors="pt", truncation=True,
                                  max_length=encoder.max_length)
        ids, attention = batch["input_ids"], batch["attention_mask"]
        baseline = torch.full_like(ids, encoder.tokenizer.pad_token_id)
        baseline[:, 0], baseline[:, -1] = ids[:, 0], ids[:, -1]  # keep [CLS] and [SEP]

        def forward(input_ids, attention_mask):
            out = encoder.model(input_ids=input_ids, attention_mask=attention_mask)
            hidden = torch.stack(out.hidden_states, dim=1)
            return self.model(hidden, attention_mask.bool()).softmax(-1)

        ig = LayerIntegratedGradients(forward, encoder.model.embeddings)
        attributions = ig.attribute(ids, baselines=baseline, additional_forward_args=(attention,), target=target,
                                    n_steps=IG_STEPS, internal_batch_size=IG_STEPS)
        return self.per_unit(attributions.sum(-1)[0].detach().numpy())


class ImageCase:
    """The picture the model sees, cut into its 7x7 grid of 32-pixel cells; a deleted cell is set to black (0)."""

    unit = "cells"

    def __init__(self, model, image: np.ndarray) -> None:
        self.model, self.source = model, image
        self.seen = torch.from_numpy(np.array(prepare_image(image), dtype=np.float32))
        grid, side = model.encoder.grid, self.seen.shape[0]
        cell = side // grid
        self.cells = (torch.arange(side)[:, None] // cell * grid + torch.arange(side)[None, :] // cell)  # (224, 224)
        self.units = grid * grid

    def per_unit(self, position_scores: np.ndarray) -> np.ndarray:
        """The positions are the cells, in the same order."""
        if len(position_scores) != self.units:
            raise ValueError(f"{len(position_scores)} position scores for {self.units} cells")
        return np.asarray(position_scores, dtype=float)

    def inputs(self, keeps: np.ndarray) -> torch.Tensor:
        keep = torch.from_numpy(np.asarray(keeps, dtype=np.float32))  # (n, 49)
        return self.seen[None] * keep[:, self.cells]  # (n, 224, 224)

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        return self._forward(self.inputs(keeps)).numpy()

    def _forward(self, pictures: torch.Tensor) -> torch.Tensor:
        features = self.model.encoder.features(pictures)
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
        return self.model(features, mask).softmax(-1)

    def integrated_gradients(self, target: int) -> np.ndarray:
        from captum.attr import IntegratedGradients

        attributions = IntegratedGradients(self._forward).attribute(
            self.seen[None], baselines=torch.zeros_like(self.seen[None]), target=target, n_steps=IG_STEPS,
            internal_batch_size=IG_STEPS)[0].detach()
        return np.bincount(self.cells.flatten().numpy(), weights=attributions.flatten().numpy(),
                           minlength=self.units)


class AudioCase:
    """The clip as the model hears it (trimmed, 16 kHz), cut into the encoder's 20 ms frames, its positions; a
    deleted frame is silenced (its samples set to 0) before the log-mel is computed again."""

    unit = "frames"

    def __init__(self, model, clip) -> None:
        from .audio import prepare_audio
        from .whisper import HOP, output_frames

        self.model = model
        self.source = prepare_audio(clip)
        self.units = int(output_frames(torch.tensor(self.source.log_mel.shape[1])))
        samples = len(self.source.waveform)
        self.frame_of_sample = np.minimum(np.arange(samples) // (2 * HOP), self.units - 1)  # 2 mel hops per frame

    def per_unit(self, position_scores: np.ndarray) -> np.ndarray:
        """The positions are the frames, in the same order."""
        if len(position_scores) != self.units:
            raise ValueError(f"{len(position_scores)} position scores for {self.units} frames")
        return np.asarray(position_scores, dtype=float)

    def integrated_gradients(self, target: int) -> np.ndarray:
        """captum's IG over the log-mel, from silence (the floor log_mel clamps to), summed per encoder frame."""
        from captum.attr import IntegratedGradients

        from .whisper import silence_level

        mel = torch.from_numpy(self.source.log_mel)[None]  # (1, 80, mel frames)

        def forward(m: torch.Tensor) -> torch.Tensor:
            hidden = self.model.encoder.model(m)
            return self.model(hidden, torch.ones(hidden.shape[0], hidden.shape[2], dtype=torch.bool)).softmax(-1)

        silence = torch.full_like(mel, silence_level(mel))
        attributions = IntegratedGradients(forward).attribute(mel, baselines=silence, target=target, n_steps=IG_STEPS,
                                                              internal_batch_size=IG_STEPS)[0].detach().sum(0)
        return np.bincount(np.arange(len(attributions)) // 2, weights=attributions.numpy(), minlength=self.units)[: self.units]

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        from dataclasses import replace

        from .whisper import log_mel

        clips = []
        for keep in np.asarray(keeps):
            waveform = (self.source.waveform * keep[self.frame_of_sample]).astype(np.float32)
            clips.append(replace(self.source, waveform=waveform, log_mel=log_mel(torch.from_numpy(waveform)).numpy()))
        encoded = self.model.encoder(clips)
        return self.model(encoded.features.float(), encoded.mask).softmax(-1).numpy()


def deletion_curves(case, rankings: dict[str, np.ndarray], target: int,
                    insertion: bool = True) -> dict[str, tuple[list[float], list[float]]]:
    """Per ranking (unit scores), the deletion drop and insertion recovery of the target's probability at each
    fraction of units: one batched pass of the model for every ranking and fraction together."""
    n = case.units
    keeps = [np.ones(n), np.zeros(n)]  # the full input, and the empty one insertion starts from
    for scores in rankings.values():
        order = np.argsort(-np.asarray(scores), kind="stable")
        for fraction in FRACTIONS:
            top = order[: max(1, round(fraction * n))]
            deleted, inserted = np.ones(n), np.zeros(n)
            deleted[top], inserted[top] = 0, 1
            keeps += [deleted, inserted] if insertion else [deleted]
    p = case.probabilities(np.stack(keeps))[:, target]
    full, empty, per = float(p[0]), float(p[1]), (2 if insertion else 1) * len(FRACTIONS)
    out = {}
    for r, name in enumerate(rankings):
        block = p[2 + r * per: 2 + (r + 1) * per]
        drops = [full - float(v) for v in (block[0::2] if insertion else block)]
        out[name] = (drops, [float(v) - empty for v in block[1::2]] if insertion else [])
    return out


CASES = {"text": TextCase, "image": ImageCase, "audio": AudioCase}  # by input kind (daam.modalities)


def unit_case(model, item):
    """The deletion-test view of an input for this model's modality."""
    kind = modality(model.config.modality).input_kind
    if kind not in CASES:
        raise ValueError(f"no deletion test for {kind} input yet; it exists for {', '.join(CASES)}")
    return CASES[kind](model, item)


def check(model, item, rng: np.random.Generator | None = None) -> dict:
    """For one input: the deletion drop at each fraction when removing the most relevant units, and random ones.

    Random is the mean of 3 random orders. One explanation, then one batched pass of the model for every ranking."""
    rng = rng or np.random.default_rng(0)
    case = unit_case(model, item)
    explanation = model.explain(case.source)
    target = explanation.labels.index(explanation.predicted_label)
    rankings = {"relevance": case.per_unit(explanation.position_relevance)}
    rankings |= {f"random {i}": rng.random(case.units) for i in range(3)}
    curves = deletion_curves(case, rankings, target, insertion=False)
    randoms = np.mean([curves[f"random {i}"][0] for i in range(3)], 0)
    return {"fractions": list(FRACTIONS), "relevance": curves["relevance"][0], "random": [float(v) for v in randoms],
            "predicted_label": explanation.predicted_label, "units": case.units, "unit": case.unit}
