"""Training data, one module per dataset (like nanoGPT's data/*/prepare.py).

Each module reads or synthesises its examples and has `task(args) -> (Task, encoder, DAAMConfig)`:
the inputs, the split, where they came from, and the architecture trained on them. The modality
registry (daam.modalities) names each task; `python -m daam.train MODALITY` runs it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from ..model import DAAMConfig

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


def daam_config(args, encoder, labels: list[str], layer_names: list[str], dim: int, **more) -> DAAMConfig:
    """The DAAMConfig every task builds: heads and densities from the command line, one layer per name, and the
    modality's architecture (its registry entry) where the command line does not choose."""
    from ..modalities import modality

    chosen = {name: getattr(args, name) for name in ("position_mechanism", "pooling", "offset_spread")}
    architecture = modality(encoder.modality).architecture | {k: v for k, v in chosen.items() if v is not None}
    return DAAMConfig(modality=encoder.modality, labels=list(labels), num_layers=len(layer_names), dim=dim,
                      layer_heads=args.heads, position_heads=args.heads, layer_densities=args.densities,
                      position_densities=args.densities, encoder={"name": encoder.name, "kwargs": {}},
                      layer_names=list(layer_names), **architecture, **more)
