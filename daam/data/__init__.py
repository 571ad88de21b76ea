"""Training data, one module per dataset (like nanoGPT's data/*/prepare.py).

Each module reads or synthesises its examples and has `task(args) -> Task`: the inputs, the split and where
they came from; nothing of the architecture, which the training run chooses (daam.cli.prepare, with the
modality's build). The modality registry (daam.modalities) names each task; `python -m daam.train MODALITY`
runs it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

SPLIT_SEED = 0


@dataclass
class HeldOutSet:
    """Examples beyond the test split, evaluated once with every trained model (e.g. real recordings)."""

    inputs: list
    targets: list[int]
    source: str  # where they come from, for metrics.json and the card


@dataclass
class Task:
    """A modality's data, ready to encode: inputs, integer targets, the split, and where it came from."""

    description: str
    labels: list[str]
    inputs: list
    targets: list[int]
    split: dict[str, list[int]]
    provenance: dict  # data files, hashes, split rules: written to metrics.json
    sort_key: Callable | None = None
    groups: list[str] | None = None  # per input, e.g. its voice: test accuracy is also reported per group
    held_out: dict[str, HeldOutSet | None] = field(default_factory=dict)  # name -> set (None: not installed)


def stratified_split(labels: list[int], seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    rng = random.Random(seed)
    split = {"train": [], "val": [], "test": []}
    for label in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(idx)
        n_train, n_val = round(fractions[0] * len(idx)), round(fractions[1] * len(idx))
        split["train"] += idx[:n_train]
        split["val"] += idx[n_train:n_train + n_val]
        split["test"] += idx[n_train + n_val:]
    return {k: sorted(v) for k, v in split.items()}
