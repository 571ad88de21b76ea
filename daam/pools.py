"""Pools: what sits between the adapter's layers and the classifier's head, chosen by name (DAAMConfig.pool).

Every pool takes the adapter's states (batch, layers, positions, dim) and the mask (batch, positions) and returns
a PoolOutput: the pooled vector (batch, dim), how much weight each position got (batch, positions; summing to 1
over the real positions) and the layer-mixed states. The classifier around it (daam.model.DAAMClassifier) is the
same for every pool: adapter -> pool -> LayerNorm -> dropout -> Linear.

    daam                  DensityPool: DAAM over the layer axis, a softmax mix of layers, DAAM over positions,
                          pooled by the position stage's gates; it also returns both stages' Intermediates
    <a mechanism>         MechanismPool: a softmax mix of the layers (or the last layer alone) pooled by one of
                          daam.mechanisms (the comparison's, and the two baselines every training run reports)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .attention import Intermediates, MultiHeadDensityAdaptiveAttention, head_index
from .mechanisms import POOLINGS

COMPARED = ("mean", "softmax_attention", "multihead_attention", "additive_attention", "gated_attention",
            "daam_original")  # what python -m daam.compare trains in DAAM's place
BASELINES = {"mean_pool_probe": "mean", "attention_pool": "learned_query_attention"}  # a training run's, by their metrics name


def mix_layers(hidden: torch.Tensor, layer_logits: torch.Tensor) -> torch.Tensor:
    """(batch, layers, positions, dim) -> (batch, positions, dim): the softmax(layer_logits)-weighted sum of layers.
    A broadcast product and a sum, not an einsum, which routes a 5-wide contraction through a batched matmul
    (benchmarks/bench_compare_training.py prints the ratio)."""
    return (hidden * layer_logits.softmax(0)[:, None, None]).sum(1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of x over `dim` where mask (broadcastable to x) is True."""
    weight = mask.to(x.dtype)
    return (x * weight).sum(dim) / weight.sum(dim).clamp(min=1)


@dataclass
class PoolOutput:
    pooled: torch.Tensor  # (batch, dim)
    weights: torch.Tensor  # (batch, positions): each position's share, summing to 1 over the real positions
    mixed: torch.Tensor  # (batch, positions, dim): the states the pool weighted (layers gated and mixed, or the last)
    layers: Intermediates | None = None  # a density pool's layer stage: z and gate, shaped like the hidden states
    positions: Intermediates | None = None  # its position stage: shaped like mixed, or (batch, positions, heads)


# ---------------------------------------------------------------------------- DAAM's stages
class Passthrough(nn.Module):
    """A stage that weights nothing (every gate 1): the position stage becomes plain mean pooling."""

    num_heads = 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, return_intermediates: bool = False):
        gate = torch.ones_like(x)
        return (x, Intermediates(z=None, gate=gate)) if return_intermediates else x


class ScoredDensityAttention(MultiHeadDensityAdaptiveAttention):
    """DAAM over a learned score of each position, one per head, instead of over every channel.

    Head h scores each position, s_h = w_h . x + b_h; the scores are standardised over the real positions and gated
    by the head's density. So a head's gate is one value per position, (batch, positions, heads): how much of that
    position the head lets through, the same for every channel it owns (DensityPool.channel_gate). Gating every
    channel by its own z instead favours positions whose values are typical on most channels, which is not where
    the evidence is; a learned score lets a head's density pick the positions that matter."""

    def __init__(self, dim: int, num_heads: int, num_densities: int, mode: str = "mixture") -> None:
        super().__init__(1, num_heads, num_densities, mode=mode, head_axis=2)
        self.score = nn.Linear(dim, num_heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, return_intermediates: bool = False):
        """x (batch, positions, dim) -> the gated scores (batch, positions, heads) [, Intermediates of the scores]."""
        return super().forward(self.score(x), mask=mask, return_intermediates=return_intermediates)


# A stage weights its input per position and channel group: it returns the same shape (or, for a position stage,
# one value per head) and can return its Intermediates. Another stage plugs in here.
STAGES = {
    "daam": lambda dim, heads, densities, mode, head_axis: MultiHeadDensityAdaptiveAttention(
        1, heads, densities, mode=mode, head_axis=head_axis),
    "daam_score": lambda dim, heads, densities, mode, head_axis: ScoredDensityAttention(dim, heads, densities, mode),
    "none": lambda dim, heads, densities, mode, head_axis: Passthrough(),
}


def build_stage(name: str, **kwargs) -> nn.Module:
    if name not in STAGES:
        raise ValueError(f"unknown stage mechanism {name!r}; known: {sorted(STAGES)}")
    return STAGES[name](**kwargs)


# ---------------------------------------------------------------------------- the pools
class DensityPool(nn.Module):
    """    hidden (batch, layers, positions, dim)
      -> DAAM over the layer axis, heads over channel groups   # its mean gate = Importance Factor
      -> softmax-weighted sum over layers                        (batch, positions, dim)
      -> DAAM over positions, mask-aware, heads over channel groups: of every channel ("daam"), or of
         a learned score per head and position ("daam_score", ScoredDensityAttention)
      -> pooled over positions: the mean of the gated values ("mean"), or each head's gates normalised
         over positions as its channels' pooling weights ("gate")                             (batch, dim)
    """

    def __init__(self, config) -> None:
        super().__init__()
        c = self.config = config
        if c.pooling not in ("mean", "gate"):
            raise ValueError(f"unknown pooling {c.pooling!r}; known: mean, gate")
        # Statistics across layers for each (position, channel); heads own groups of channels.
        self.layer_attention = build_stage(c.layer_mechanism, dim=c.dim, heads=c.layer_heads,
                                           densities=c.layer_densities, mode=c.mode, head_axis=3)
        self.layer_logits = nn.Parameter(torch.zeros(c.num_layers))
        # Statistics across positions, of each channel ("daam") or of each head's score ("daam_score"); either way
        # a head owns a group of channels, which it weights.
        self.position_attention = build_stage(c.position_mechanism, dim=c.dim, heads=c.position_heads,
                                              densities=c.position_densities, mode=c.mode, head_axis=2)
        if c.offset_spread and isinstance(self.position_attention, MultiHeadDensityAdaptiveAttention):
            stage = self.position_attention
            with torch.no_grad():
                stage.mean_offsets.copy_(torch.linspace(-c.offset_spread, c.offset_spread, stage.num_densities))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, layer_details: bool = True) -> PoolOutput:
        """layer_details=False: the layer stage keeps neither its z-values nor its gates (PoolOutput.layers is None),
        which saves writing two tensors the size of hidden when nothing reads them (a dataset's rows)."""
        if layer_details:
            gated, layers = self.layer_attention(hidden, mask=mask[:, None, :, None], return_intermediates=True)
        else:
            gated, layers = self.layer_attention(hidden, mask=mask[:, None, :, None]), None
        mixed = mix_layers(gated, self.layer_logits)  # (batch, positions, dim)
        _, positions = self.position_attention(mixed, mask=mask[:, :, None], return_intermediates=True)
        pooled = (self.pool_shares(positions.gate, mask) * mixed).sum(1)  # (batch, dim)
        # Each position's weight, as every pool gives it: its mean raw gate over the position stage's channels
        # (what the stage lets through), normalised over the real positions.
        weights = positions.gate.mean(-1) * mask
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        return PoolOutput(pooled, weights, mixed, layers, positions)

    def channel_gate(self, gate: torch.Tensor) -> torch.Tensor:
        """The position stage's gate per channel, (batch, positions, dim): a scored stage gives one value per head
        (ScoredDensityAttention), which every channel of that head takes."""
        dim = self.config.dim
        return gate if gate.shape[-1] == dim else gate.index_select(-1, head_index(dim, gate.shape[-1], gate.device))

    def pool_shares(self, gate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each position's share of the pooled vector, per channel: (batch, positions, dim), summing to the mean
        gate over positions ("mean" pooling of the gated values) or to 1 ("gate" pooling); padding has none."""
        gate = self.channel_gate(gate)
        real = mask[:, :, None].to(gate.dtype)
        if self.config.pooling == "gate":
            weights = gate * real
            return weights / weights.sum(1, keepdim=True).clamp(min=1e-6)
        return gate * real / real.sum(1, keepdim=True).clamp(min=1)


class MechanismPool(nn.Module):
    """A softmax mix of the layers ("mix"; or the last layer alone, "last") pooled by a mechanism of
    daam.mechanisms, named by config.pool."""

    def __init__(self, config) -> None:
        super().__init__()
        if config.layers not in ("mix", "last"):
            raise ValueError(f"layers must be 'mix' or 'last', got {config.layers!r}")
        self.config = config
        if config.layers == "mix":
            self.layer_logits = nn.Parameter(torch.zeros(config.num_layers))
        self.pooling = POOLINGS[config.pool](config.dim)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> PoolOutput:
        mixed = mix_layers(hidden, self.layer_logits) if self.config.layers == "mix" else hidden[:, -1]
        pooled, weights = self.pooling(mixed, mask)
        return PoolOutput(pooled, weights, mixed)


POOLS: dict[str, type[nn.Module]] = {"daam": DensityPool} | {name: MechanismPool for name in POOLINGS}


def build_pool(config) -> nn.Module:
    if config.pool not in POOLS:
        raise ValueError(f"unknown pool {config.pool!r}; known: {sorted(POOLS)}")
    if config.pool == "daam" and config.layers != "mix":
        raise ValueError("the daam pool weights every layer (its layer stage); layers must be 'mix'")
    return POOLS[config.pool](config)
