"""Pooling mechanisms that take DAAM's place in the classifier: the comparison's (`python -m daam.compare`) and the
two baselines every training run reports beside DAAM (mean pooling and learned-query attention of the last layer).

Every mechanism pools (batch, positions, dim) states over their real positions into (batch, dim) and says how much
weight each position got, (batch, positions), summing to 1 over real positions. daam.pools.MechanismPool puts one
in DAAM's place, after a learned softmax mix of the layers (or the last layer alone, for the baselines).

    mean                  every real position alike
    softmax_attention     one learned query: softmax over positions of q . x (q starts at 0: uniform weights)
    multihead_attention   scaled dot-product attention, 4 heads, a learned query each, keys W_k x; weights: mean of heads
    additive_attention    Bahdanau: softmax of v . tanh(W x + b)
    gated_attention       Ilse et al. (2018): softmax of w . (tanh(V x) * sigmoid(U x))
    daam_original         the original release's gate (daam.original): per channel, a normalised product of
                          Gaussians over positions, i.e. a per-channel attention distribution; weights: its mean
    learned_query_attention
                          nn.MultiheadAttention (4 heads) from one learned query to the states: the attention-pooling
                          baseline of training runs (metrics.json's attention_pool); weights: the mean of its heads
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .original import MultiHeadGaussianAdaptiveAttention


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over positions (dim 1) of real entries; scores (batch, positions)."""
    return scores.masked_fill(~mask, -math.inf).softmax(1)


def _pool(weights: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bp,bpd->bd", weights, states)


class MeanPooling(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, states, mask):
        weights = mask.float() / mask.sum(1, keepdim=True).clamp(min=1)
        return _pool(weights, states), weights


class SoftmaxAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))

    def forward(self, states, mask):
        weights = _masked_softmax(states @ self.query, mask)
        return _pool(weights, states), weights


class MultiheadAttention(nn.Module):
    """Scaled dot-product attention from a learned query per head to keys W_k x (16 dimensions a head); the values
    are the states themselves, so the pooled vector is the mean over heads of each head's weighted sum."""

    def __init__(self, dim: int, num_heads: int = 4, head_dim: int = 16) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.keys = nn.Linear(dim, num_heads * head_dim)
        self.query = nn.Parameter(torch.randn(num_heads, head_dim) * head_dim**-0.5)

    def forward(self, states, mask):
        keys = self.keys(states).unflatten(-1, (self.num_heads, self.head_dim))  # (batch, positions, heads, hd)
        scores = torch.einsum("bphd,hd->bhp", keys, self.query) / math.sqrt(self.head_dim)
        weights = scores.masked_fill(~mask[:, None], -math.inf).softmax(-1)  # (batch, heads, positions)
        pooled = torch.einsum("bhp,bpd->bd", weights, states) / self.num_heads
        return pooled, weights.mean(1)


class AdditiveAttention(nn.Module):
    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.project, self.score = nn.Linear(dim, hidden), nn.Linear(hidden, 1, bias=False)

    def forward(self, states, mask):
        weights = _masked_softmax(self.score(torch.tanh(self.project(states)))[..., 0], mask)
        return _pool(weights, states), weights


class GatedAttention(nn.Module):
    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.content, self.gate = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, states, mask):
        scores = self.score(torch.tanh(self.content(states)) * torch.sigmoid(self.gate(states)))[..., 0]
        weights = _masked_softmax(scores, mask)
        return _pool(weights, states), weights


class OriginalDensityPooling(nn.Module):
    """The original release's normalised product of Gaussians over positions, one head, 3 densities: its gate sums to
    1 over each channel's real positions, so the sum of the gated states over positions is a pooled vector."""

    def __init__(self, dim: int, densities: int = 3) -> None:
        super().__init__()
        self.density = MultiHeadGaussianAdaptiveAttention(1, 1, densities)

    def forward(self, states, mask):
        gated, gate = self.density(states, True, mask=mask[:, :, None])
        gated = gated.masked_fill(~mask[:, :, None], 0.0)
        # The gate carries the gradient here: return_attention_details detaches what it returns for display.
        return gated.sum(1), gate.mean(-1)


class LearnedQueryAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 4) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, states, mask):
        pooled, weights = self.attention(self.query.expand(len(states), -1, -1), states, states, key_padding_mask=~mask)
        return pooled[:, 0], weights[:, 0]  # (batch, dim), (batch, positions): the mean over heads


POOLINGS = {
    "mean": MeanPooling,
    "softmax_attention": SoftmaxAttention,
    "multihead_attention": MultiheadAttention,
    "additive_attention": AdditiveAttention,
    "gated_attention": GatedAttention,
    "daam_original": OriginalDensityPooling,
    "learned_query_attention": LearnedQueryAttention,
}
