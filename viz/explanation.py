"""Every figure for one Explanation, given as the plain dict of its JSON form (or dataclasses.asdict)."""

from __future__ import annotations

from typing import Mapping

import plotly.graph_objects as go

from . import figures


def explanation_figures(e: Mapping, head: int | None = None, normalise_per_head: bool = False) -> dict[str, go.Figure | str]:
    """Name -> figure (the highlighted text is an HTML string). Unknown modalities get the shared figures only."""
    for key in ("modality", "labels", "probabilities", "position_labels", "position_weights", "density"):
        if key not in e:
            raise ValueError(f"explanation is missing the field {key!r}")
    extras = e.get("extras") or {}
    out: dict[str, go.Figure | str] = {"prediction": figures.prediction_bars(e["labels"], e["probabilities"])}
    if e["modality"] == "text":
        out["positions"] = figures.token_heatmap(e["position_labels"], e["position_weights"], normalise_per_head)
        out["highlighted_text"] = figures.highlighted_text_html(e["position_labels"], e["position_weights"], head)
    elif e["modality"] == "image":
        out["positions"] = figures.image_overlay(_array_extra(extras, "image"), e["position_weights"], all_heads=True)
    elif e["modality"] == "audio":
        out["positions"] = figures.audio_view(_array_extra(extras, "log_mel"), _array_extra(extras, "frame_times"),
                                              e["position_weights"], _array_extra(extras, "position_times"))
    z = e.get("z_values") or {}
    for stage in ("positions", "layers"):
        if stage in e["density"]:
            fig = figures.mixture_curves(e["density"][stage], z.get(stage), stage)
            fig.update_layout(title_text=f"Learned density per head: {stage} stage" + (
                " (product mode: one Gaussian)" if e["density"][stage].get("mode") == "product" else ""))
            out[f"density_{stage}"] = fig
    if e.get("layer_importance") is not None:
        out["layer_importance"] = figures.layer_importance(e["layer_importance"], e["layer_names"])
    if "baseline_weights" in extras:
        out["comparison"] = figures.attention_comparison(e["position_labels"], e["position_weights"],
                                                         _array_extra(extras, "baseline_weights"))
    return out


def _array_extra(extras: Mapping, key: str):
    if key not in extras:
        raise ValueError(f"explanation.extras is missing {key!r}")
    value = extras[key]
    if isinstance(value, Mapping) and "png" in value:
        return figures.png_array(value["png"])
    return value["array"] if isinstance(value, Mapping) and "array" in value else value
