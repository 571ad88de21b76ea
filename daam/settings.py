"""TrainSettings: how a training run trains on its cached features (daam.train), each field also a flag of the
training command line (daam.cli)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainSettings:
    """How a run trains on the cached features; each field is a command-line flag too (daam.cli.settings_for)."""

    epochs: int = field(default=6, metadata={"help": "passes over the training split", "positive": True})
    batch_size: int = field(default=64, metadata={"help": "examples per step", "positive": True})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate (one-cycle schedule)", "positive": True})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW's, except on the density parameters"})
    # The density parameters' peak rate, and the weight of the head-overlap penalty (attention.head_overlap): at the
    # base rate the densities never leave their start. Chosen on text validation (README, "Trained checkpoints").
    density_lr: float | None = field(default=5e-2, metadata={"help": "peak rate of the density parameters", "positive": True})
    head_diversity: float = field(default=0.2, metadata={"help": "weight of the head-overlap penalty"})
