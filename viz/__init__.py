"""DAAM Lens views: Plotly figures of an Explanation (daam.explanation). Imports neither torch nor gradio."""

from .explanation import POSITION_FIGURES, explanation_figures
from .figures import (
    accuracy_vs_cost,
    audio_view,
    deletion_check,
    display_tokens,
    gated_sample,
    highlighted_text_html,
    image_overlay,
    layer_importance,
    mechanism_curves,
    mechanism_weights,
    mixture_curves,
    png_array,
    prediction_bars,
    relevance_heatmap,
    token_heatmap,
    training_curves,
)

__all__ = ["POSITION_FIGURES", "accuracy_vs_cost", "audio_view", "deletion_check", "display_tokens", "explanation_figures",
           "gated_sample", "highlighted_text_html", "image_overlay", "layer_importance", "mechanism_curves", "mechanism_weights", "mixture_curves", "png_array",
           "prediction_bars", "relevance_heatmap", "token_heatmap", "training_curves"]
