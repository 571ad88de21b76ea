"""Trainable adapters: an encoder's output -> hidden states (batch, layers, positions, dim).

The frozen encoder's output is what training caches; the adapter sits after the cache, so
its weights train with DAAM and are saved in the checkpoint with it.

- text: MiniLM's hidden states already are (batch, layers, tokens, dim): identity.
- image: EfficientNet stage outputs on the 7x7 grid, concatenated along channels
  (batch, 49, sum of widths): one learned 1x1 projection per stage to a common width.
- audio: log-mel frames (batch, frames, mels): a small convolutional network trained from
  scratch; the output of every convolution is one layer.
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


MAX_MASK_FRAMES, MAX_MASK_MELS = 8, 6  # 0.16 s of a letter's ~0.5 s; 6 of 40 mel bands


def spec_augment(features: torch.Tensor, masks: int, max_frames: int, max_mels: int) -> torch.Tensor:
    """SpecAugment-style masking of (batch, frames, mels): `masks` random time spans of up to `max_frames` frames and
    `masks` random mel bands of up to `max_mels` bands per clip are set to 0, the mean of per-clip normalised frames.

    It makes the network rely on more than one cue per letter, which synthetic voices alone do not teach."""
    batch, frames, mels = features.shape

    def spans(length: int, width: int) -> torch.Tensor:  # (batch, length): True inside any of the spans
        widths = torch.randint(0, width + 1, (batch, masks, 1), device=features.device)
        starts = (torch.rand(batch, masks, 1, device=features.device) * (length - widths).clamp(min=1)).long()
        steps = torch.arange(length, device=features.device)  # (length,)
        return ((steps >= starts) & (steps < starts + widths)).any(dim=1)

    dropped = spans(frames, max_frames)[:, :, None] | spans(mels, max_mels)[:, None, :]  # (batch, frames, mels)
    return features.masked_fill(dropped, 0.0)


class FrameConvolution(nn.Module):
    """(batch, frames, mels) -> (batch, layers, frames, dim): a mel projection, then residual dilated 1-D convolutions.

    Padded frames are zeroed before every convolution, so a clip's hidden states do not depend on
    how much padding its batch needed. With `masks` > 0, training (never inference) masks time spans and
    mel bands of the input (`spec_augment`)."""

    def __init__(self, mels: int, dim: int, num_layers: int = 4, kernel: int = 5, dropout: float = 0.1,
                 masks: int = 0, max_mask_frames: int = MAX_MASK_FRAMES, max_mask_mels: int = MAX_MASK_MELS) -> None:
        super().__init__()
        self.masks, self.max_mask_frames, self.max_mask_mels = masks, max_mask_frames, max_mask_mels
        self.input = nn.Sequential(nn.Linear(mels, dim), nn.LayerNorm(dim))
        # Dilation doubles per layer: 4 layers of kernel 5 see 61 frames (0.6 s), about one spoken letter.
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, padding=2**i * (kernel // 2), dilation=2**i)
                                   for i in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training and self.masks:
            features = spec_augment(features, self.masks, self.max_mask_frames, self.max_mask_mels)
        keep = mask[:, :, None].to(features.dtype)  # (batch, frames, 1)
        x = self.input(features) * keep  # (batch, frames, dim)
        layers = [x]
        for conv, norm in zip(self.convs, self.norms):
            update = conv(x.transpose(1, 2)).transpose(1, 2)  # convolve along frames
            x = norm(x + self.dropout(nn.functional.gelu(update))) * keep
            layers.append(x)
        return torch.stack(layers, dim=1)


ADAPTERS = {"identity": Identity, "stage_projection": StageProjection, "frame_convolution": FrameConvolution}


def build_adapter(spec: dict) -> nn.Module:
    """spec: {"name": ..., "kwargs": {...}}; an empty spec is the identity (text checkpoints)."""
    name = spec.get("name", "identity")
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[name](**spec.get("kwargs", {}))
