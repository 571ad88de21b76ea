"""The module path the original release used: `gaussian_adaptive_attention.GaussianBlock`."""

from .gaussian_block import GaussianAdaptiveAttention, GaussianBlock, MultiHeadGaussianAdaptiveAttention

__all__ = ["GaussianAdaptiveAttention", "MultiHeadGaussianAdaptiveAttention", "GaussianBlock"]
