"""Drop-in for the original `gaussian_adaptive_attention` release (0.1.5): same classes, constructors, forward
signatures and state_dict layout, the same maths computed stably, and its bugs fixed (see daam/original.py)."""

from .gaussian_block import GaussianAdaptiveAttention, GaussianBlock, MultiHeadGaussianAdaptiveAttention

__all__ = ["GaussianAdaptiveAttention", "MultiHeadGaussianAdaptiveAttention", "GaussianBlock"]
