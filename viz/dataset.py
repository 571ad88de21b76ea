"""Figures of a whole explained dataset (daam.dataset_view's aggregates): what each head favours across many inputs,
the mean relevance per class, and the confusion matrix's colours. Plain arrays and tables in, figures out."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .figures import AXIS_STYLE, DIVERGING, LINE_COLOURS, _axis, _colour_table, _layout, _subplot_grid


def favoured_tokens(tables: dict[str, pd.DataFrame], head_name: str = "mean of heads") -> go.Figure:
    """Two bar charts side by side: the tokens with the highest mean relevance, and with the highest mean gate of
    the head, each with how often it occurred (hover and bar text)."""
    layout, refs = _subplot_grid(1, 2, ["highest mean relevance", f"highest mean gate ({head_name})"], hspace=0.22)
    traces = []
    for (name, table), (x, y, _) in zip(tables.items(), refs):
        tokens = [str(t) for t in table["token"]][::-1]  # best at the top
        traces.append(dict(type="bar", orientation="h", x=table["mean"].to_numpy()[::-1], y=tokens, xaxis=x, yaxis=y,
                           marker_color=LINE_COLOURS[0 if name == "relevance" else 1], showlegend=False,
                           text=[f"×{c}" for c in table["count"].to_numpy()[::-1]], textposition="auto",
                           customdata=table["count"].to_numpy()[::-1],
                           hovertemplate=f"%{{y}}<br>mean {name} %{{x:.4f}}<br>seen %{{customdata}} times<extra></extra>"))
        layout[_axis(x)]["title"] = f"mean {name}"
        layout[_axis(y)].update(type="category", automargin=True)
    rows = max([len(t) for t in tables.values()] + [1])
    return _layout(go.Figure(data=traces, layout=layout), "What the heads favour across these rows (tokens)",
                   140 + 22 * rows)


def _means(values) -> np.ndarray:
    """(classes, positions) means, NaN where a class has no row reaching a position."""
    mean = np.asarray(values, dtype=float)
    if mean.ndim != 2 or np.isinf(mean).any():
        raise ValueError(f"mean relevance must be a finite (classes, positions) array, got shape {mean.shape}")
    return mean


def class_relevance_maps(mean: np.ndarray, labels: Sequence[str], present: Sequence[bool]) -> go.Figure:
    """One small heatmap per class (true label) of the mean relevance of each cell of the grid, on one shared,
    zero-centred colour scale; classes with no row (present False) are left out."""
    mean = _means(mean)
    side = int(round(mean.shape[1] ** 0.5))
    if side * side != mean.shape[1]:
        raise ValueError(f"{mean.shape[1]} positions are not a square grid")
    shown = [i for i, p in enumerate(present) if p]
    cols = min(5, max(1, len(shown)))
    rows = -(-len(shown) // cols)
    layout, refs = _subplot_grid(rows, cols, [str(labels[i]) for i in shown], hspace=0.04, vspace=0.1)
    limit = float(np.nanmax(np.abs(mean[shown]))) if shown else 1.0
    traces = []
    for n, i in enumerate(shown):
        x, y, _ = refs[n]
        traces.append(dict(type="heatmap", z=mean[i].reshape(side, side), xaxis=x, yaxis=y, colorscale=DIVERGING,
                           zmin=-limit, zmax=limit, showscale=n == 0, colorbar=dict(title="mean relevance"),
                           hovertemplate=f"{labels[i]}<br>row %{{y}}, col %{{x}}<br>mean relevance %{{z:.4f}}"
                                         "<extra></extra>"))
        layout[_axis(x)].update(showticklabels=False, constrain="domain")
        layout[_axis(y)].update(showticklabels=False, autorange="reversed", scaleanchor=x, constrain="domain")
    return _layout(go.Figure(data=traces, layout=layout), "Mean relevance per cell, by true class", 90 + 170 * rows)


def relevance_over_positions(mean: np.ndarray, labels: Sequence[str], present: Sequence[bool],
                             position_labels: Sequence[str], unit: str = "frame") -> go.Figure:
    """One line per class (true label): the mean relevance at each position (rows aligned at their first)."""
    mean = _means(mean)
    x = list(position_labels)[: mean.shape[1]]
    traces = [go.Scatter(x=x, y=mean[i], mode="lines", name=str(labels[i]), connectgaps=False,
                         line=dict(color=LINE_COLOURS[n % len(LINE_COLOURS)], width=2),
                         hovertemplate=f"{labels[i]}<br>{unit} %{{x}}<br>mean relevance %{{y:.4f}}<extra></extra>")
              for n, i in enumerate(i for i, p in enumerate(present) if p)]
    fig = go.Figure(traces)
    fig.update_layout(xaxis=dict(title=unit, **AXIS_STYLE), yaxis=dict(title="mean relevance", **AXIS_STYLE),
                      legend=dict(orientation="h", y=-0.25))
    return _layout(fig, f"Mean relevance over {unit}s, by true class", 420)


def confusion_colours(counts: np.ndarray) -> np.ndarray:
    """CSS for each cell of a confusion matrix: the cividis background of its count (relative to the largest cell,
    colour-blind safe), with ink that stays readable on it (cividis is light at its top)."""
    shade = np.asarray(counts, dtype=float) / max(float(np.max(counts)), 1.0)
    colours = _colour_table()[np.round(shade * 255).astype(int)]
    return np.array([[f"background-color: {c}; color: {'#000' if s > 0.55 else '#fff'}" for c, s in zip(cr, sr)]
                     for cr, sr in zip(colours, shade)])
