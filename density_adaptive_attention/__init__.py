"""Drop-in for the original `density_adaptive_attention` release: same classes, constructors, forward signatures
and state_dict layout, the same maths computed stably, and its bugs fixed (see daam/original.py)."""

from daam.original import DensityAdaptiveAttention, DensityBlock, MultiHeadDensityAdaptiveAttention

__all__ = ["DensityAdaptiveAttention", "MultiHeadDensityAdaptiveAttention", "DensityBlock"]
