"""Baselines trained on the same cached encoder features as DAAM, for side-by-side results.

Each has its own copy of the checkpoint's adapter (trained with it), then pools the last layer."""

from __future__ import annotations

import torch
import torch.nn as nn

from .adapters import build_adapter
from .model import masked_mean


class MeanPoolProbe(nn.Module):
    """Last layer, masked mean over positions, linear probe."""

    def __init__(self, dim: int, num_classes: int, adapter: dict | None = None) -> None:
        super().__init__()
        self.adapter = build_adapter(adapter or {})
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.adapter(features, mask)  # (batch, layers, positions, dim)
        return self.head(self.norm(masked_mean(hidden[:, -1], mask[:, :, None], dim=1)))


class AttentionPool(nn.Module):
    """Last layer, softmax attention pooling with a learned query, linear head."""

    def __init__(self, dim: int, num_classes: int, adapter: dict | None = None, num_heads: int = 4) -> None:
        super().__init__()
        self.adapter = build_adapter(adapter or {})
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.adapter(features, mask)[:, -1]  # (batch, positions, dim)
        pooled, _ = self.attention(self.query.expand(len(states), -1, -1), states, states,
                                   key_padding_mask=~mask, need_weights=False)
        return self.head(self.norm(pooled[:, 0]))
