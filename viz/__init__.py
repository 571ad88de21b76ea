"""DAAM Lens views: Plotly figures from plain Explanation data. Imports neither torch nor gradio."""

from .figures import (
    attention_comparison,
    audio_view,
    image_overlay,
    display_tokens,
    gated_sample,
    highlighted_text_html,
    layer_importance,
    mixture_curves,
    png_array,
    prediction_bars,
    token_heatmap,
    training_curves,
)
from .explanation import explanation_figures

__all__ = ["attention_comparison", "audio_view", "image_overlay", "display_tokens", "highlighted_text_html", "layer_importance", "mixture_curves", "png_array", "prediction_bars",
           "token_heatmap", "explanation_figures", "gated_sample",
           "training_curves"]
