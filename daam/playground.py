"""The Playground's maths: one head shaped by hand, applied to a sample, as plain data for the view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .attention import MultiHeadDensityAdaptiveAttention
from .errors import InputError
from .explanation import DensityStage
from .model import density_stage

# A fixed bimodal sample: shows what a multi-modal gate keeps and a single Gaussian cannot.
SAMPLE = np.concatenate([np.random.default_rng(0).normal(-2.0, 0.5, 700), np.random.default_rng(1).normal(1.5, 0.8, 500)])


@dataclass
class ShapedHead:
    """One hand-shaped head: its densities, and what it does to the sample."""

    density: DensityStage  # one head
    z: np.ndarray  # (samples,): the sample standardised, where the gate is evaluated
    gate: np.ndarray  # (samples,)
    peaks: int  # local maxima of the gate over the curve's z-grid


def shape_head(mode: str, offsets, scales, weights, sample: np.ndarray = SAMPLE) -> ShapedHead:
    """A one-head DAAM layer with these (densities,) parameters, applied to `sample` (statistics over it)."""
    offsets, scales, weights = (np.asarray(v, dtype=np.float32).reshape(1, -1) for v in (offsets, scales, weights))
    if not offsets.shape == scales.shape == weights.shape:
        raise InputError("offsets, scales and weights need one value per density each")
    layer = MultiHeadDensityAdaptiveAttention(1, 1, offsets.shape[1], mode=mode)
    layer.set_density_parameters(offsets, scales, np.maximum(weights, 1e-3))
    with torch.inference_mode():
        _, inter = layer(torch.as_tensor(sample, dtype=torch.float32)[None], return_intermediates=True)
    density = density_stage(layer)
    curve = density.curve[0]
    peaks = int(((curve[1:-1] > curve[:-2]) & (curve[1:-1] >= curve[2:])).sum())
    return ShapedHead(density, inter.z[0].numpy(), inter.gate[0].numpy(), peaks)


def head_parameters(attention: MultiHeadDensityAdaptiveAttention, head: int) -> dict[str, list[float]]:
    """One head's {"offsets", "scales", "weights"}, (densities,) each: a Playground start from a checkpoint."""
    params = attention.density_parameters()
    return {key: params[key][head].tolist() for key in ("offsets", "scales", "weights")}
