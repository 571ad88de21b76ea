"""Trainable adapters: an encoder's output -> hidden states (batch, layers, positions, dim).

The frozen encoder's output is what training caches; the adapter sits after the cache, so
its weights train with DAAM and are saved in the checkpoint with it.

- text and audio: MiniLM's and Whisper's hidden states already are (batch, layers, positions, dim): identity.
- image: EfficientNet stage outputs on the 7x7 grid, concatenated along channels
  (batch, 49, sum of widths): one learned 1x1 projection per stage to a common width.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Identity(nn.Module):
    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return features


class StageProjection(nn.Module):
    """(batch, positions, sum(channels)) -> (batch, stages, positions, dim), a 1x1 projection per stage."""

    def __init__(self, channels: list[int], dim: int) -> None:
        super().__init__()
        self.channels = list(channels)
        self.projections = nn.ModuleList(nn.Linear(c, dim) for c in channels)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        stages = features.split(self.channels, dim=-1)  # widths differ, so one Linear per stage
        return torch.stack([proj(s) for proj, s in zip(self.projections, stages)], dim=1)


ADAPTERS = {"identity": Identity, "stage_projection": StageProjection}


def build_adapter(spec: dict) -> nn.Module:
    """spec: {"name": ..., "kwargs": {...}}; an empty spec is the identity (text checkpoints)."""
    name = spec.get("name", "identity")
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[name](**spec.get("kwargs", {}))
