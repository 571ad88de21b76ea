"""The original `gaussian_adaptive_attention` classes (see daam/original.py); also importable as `.GaussianBlock`."""

from daam.original import GaussianAdaptiveAttention, GaussianBlock, MultiHeadGaussianAdaptiveAttention

__all__ = ["GaussianAdaptiveAttention", "MultiHeadGaussianAdaptiveAttention", "GaussianBlock"]
