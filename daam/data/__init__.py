"""Training data, one module per dataset (like nanoGPT's data/*/prepare.py).

Each module reads or synthesises its examples and has `task(args) -> Task`: the inputs, the split and where
they came from; nothing of the architecture, which the training run chooses (daam.cli.prepare, with the
modality's build). The modality registry (daam.modalities) names each task; `python -m daam.train MODALITY`
runs it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from ..errors import DataError

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


def check(task: Task) -> None:
    """A DataError, in words, for data no classifier can be trained and tested on: no examples, one class, a split
    left empty, or a class too small to reach the training split."""
    if not task.inputs:
        raise DataError(f"{task.description}: no examples were read")
    present = sorted(set(task.targets))
    if len(present) < 2:
        raise DataError(f"{task.description}: every example has the label {task.labels[present[0]]!r}; a classifier "
                        "needs examples of two classes or more")
    empty = [name for name in ("train", "val", "test") if not task.split.get(name)]
    if empty:
        raise DataError(f"{task.description}: {len(task.inputs)} examples leave the {' and '.join(empty)} split "
                        "empty; more examples are needed")
    in_training = {task.targets[i] for i in task.split["train"]}
    unseen = [f"{task.labels[c]!r} ({task.targets.count(c)})" for c in present if c not in in_training]
    if unseen:
        raise DataError(f"{task.description}: too few examples of {', '.join(unseen)} to reach the training split")


def seeded_sample(items: list[int], count: int | None, seed: int = 0) -> list[int]:
    """At most `count` of these items (None: all), a seeded random sample, in their order."""
    return sorted(random.Random(seed).sample(items, count)) if count is not None and count < len(items) else list(items)


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
