"""Every figure for one Explanation: the daam.explanation contract in, Plotly figures out.

`explanation_figures` takes an `Explanation`, or its dict form (the API's JSON), which that same class
reads. What the positions figure looks like depends on what the modality adds (`Explanation.extras`):
POSITION_FIGURES maps each extras type to its figure, so a new modality that reuses an extras type
needs nothing new here."""

from __future__ import annotations

from typing import Callable, Mapping

import plotly.graph_objects as go

from daam.explanation import STAGES, AudioExtras, Explanation, ImageExtras

from . import figures


def _text_positions(e: Explanation, head: int | None, normalise_per_head: bool) -> go.Figure:
    return figures.relevance_heatmap(e.position_labels, e.head_relevance, head, normalise_per_head)


def _image_positions(e: Explanation, head: int | None, normalise_per_head: bool) -> go.Figure:
    return figures.image_overlay(e.extras.image, e.position_relevance[None], signed=True)


def _image_gates(e: Explanation, head: int | None, normalise_per_head: bool) -> go.Figure:
    return figures.image_overlay(e.extras.image, e.position_weights, head=head, all_heads=head is None)


def _text_gates(e: Explanation, head: int | None, normalise_per_head: bool) -> go.Figure:
    return figures.token_heatmap(e.position_labels, e.position_weights, normalise_per_head, head)


def _audio_positions(e: Explanation, head: int | None, normalise_per_head: bool) -> go.Figure:
    x = e.extras
    return figures.audio_view(x.log_mel, x.frame_times, e.position_relevance[None], x.position_times, signed=True)


def _audio_gates(e: Explanation, head: int | None, normalise_per_head: bool) -> go.Figure:
    x = e.extras
    return figures.audio_view(x.log_mel, x.frame_times, e.position_weights, x.position_times,
                              heads=None if head is None else [head])


# Extras type -> the figure of what drove the prediction per position (None: text, whose positions are tokens).
POSITION_FIGURES: dict[type | None, Callable[[Explanation, int | None, bool], go.Figure]] = {
    None: _text_positions,
    ImageExtras: _image_positions,
    AudioExtras: _audio_positions,
}
# Extras type -> the figure of the raw gates, where "positions" shows relevance instead.
GATE_FIGURES: dict[type | None, Callable[[Explanation, int | None, bool], go.Figure]] = {
    None: _text_gates,
    ImageExtras: _image_gates,
    AudioExtras: _audio_gates,
}


def explanation_figures(explanation: Explanation | Mapping, head: int | None = None,
                        normalise_per_head: bool = False) -> dict[str, go.Figure | str]:
    """Name -> figure (the highlighted text is an HTML string). "positions" (and, for text, the highlighted text)
    show relevance, what drove the prediction; "gates" the raw gates, what each head lets through."""
    e = Explanation.coerce(explanation)
    kind = type(e.extras) if e.extras is not None else None
    if kind not in POSITION_FIGURES:
        raise ValueError(f"no figure for explanations with extras of type {kind.__name__}")
    out: dict[str, go.Figure | str] = {"prediction": figures.prediction_bars(e.labels, e.probabilities),
                                       "positions": POSITION_FIGURES[kind](e, head, normalise_per_head)}
    if kind is None:  # tokens: relevance first (what drove the prediction), the raw gates beside it
        out["highlighted_text"] = figures.highlighted_text_html(e.position_labels, e.head_relevance, head, signed=True)
    if kind in GATE_FIGURES:
        out["gates"] = GATE_FIGURES[kind](e, head, normalise_per_head)
    for stage in STAGES:
        if stage in e.density:
            stage_heads = len(e.density[stage].curve)  # a stage may have fewer heads than the positions stage
            out[f"density_{stage}"] = figures.mixture_curves(e.density[stage], stage=stage, z_counts=e.z_counts.get(stage),
                                                             head=head if head is not None and head < stage_heads else None)
    out["layer_importance"] = figures.layer_importance(e.layer_importance, e.layer_names)
    return out
