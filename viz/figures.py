"""Plotly figures of a DAAM Explanation. Plain arrays in, go.Figure out: no torch, no gradio.

Colour: one perceptually uniform, colour-blind-safe scale (cividis) for every weight, on a
shared 0-1 range unless per-head normalisation is asked for."""

from __future__ import annotations

import functools
import html
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from daam.explanation import Z_EDGES, DensityStage, png_array, png_data_uri  # the one PNG codec of the contract

SCALE = "Cividis"
DIVERGING = "PuOr"  # signed values (relevance): orange against the prediction, purple for it; colour-blind safe
LINE_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]  # Okabe-Ito
NOMINAL_WIDTH = 900  # only to derive heights from aspect ratios: figures take their container's width (autosize)
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=13)


def _array(name: str, values, ndim: int, allow_empty: bool = False) -> np.ndarray:
    """values as a finite float array of `ndim` dimensions, else ValueError naming the field."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(values).__name__}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


GRID_COLOUR = "rgba(128,128,128,0.25)"  # visible on light and dark pages alike
# Set on every axis directly: any template, even a two-line one, costs ~10 ms a figure to apply.
AXIS_STYLE = {"gridcolor": GRID_COLOUR, "zerolinecolor": GRID_COLOUR}


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    # Transparent backgrounds follow the page's theme.
    fig.update_layout(title=dict(text=title, x=0.01), autosize=True, height=height, font=FONT,
                      margin=dict(l=70, r=30, t=60, b=60), paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    return fig


def _spans(fractions: Sequence[float], gap: float) -> list[tuple[float, float]]:
    """Consecutive [start, end] spans of [0, 1] in proportion to `fractions`, `gap` apart."""
    total, usable = sum(fractions), 1 - gap * (len(fractions) - 1)
    spans, start = [], 0.0
    for f in fractions:
        end = start + usable * f / total
        spans.append((round(max(start, 0.0), 6), round(min(end, 1.0), 6)))
        start = end + gap
    return spans


def _subplot_grid(rows: int, cols: int, titles: Sequence[str] = (), secondary_y: bool = False,
                  row_heights: Sequence[float] | None = None, col_widths: Sequence[float] | None = None,
                  hspace: float = 0.08, vspace: float = 0.12, shared_x: bool = False) -> tuple[dict, list]:
    """Axes of a rows x cols grid as a layout dict, and each cell's (x, y, secondary y) trace references,
    row-major from the top left. Built by hand: make_subplots costs ~15 ms a figure, this well under 1 ms."""
    xs = _spans(col_widths or [1] * cols, hspace)
    ys = [(1 - b, 1 - a) for a, b in _spans(row_heights or [1] * rows, vspace)]  # row 0 at the top
    layout, refs, annotations = {}, [], []
    n = rows * cols
    for i in range(n):
        r, c = divmod(i, cols)
        suffix = "" if i == 0 else str(i + 1)
        x_axis = {"domain": xs[c], "anchor": f"y{suffix}", **AXIS_STYLE}
        if shared_x and r < rows - 1:  # upper rows follow the bottom row's axis and hide its ticks
            x_axis.update(matches=f"x{(rows - 1) * cols + c + 1}", showticklabels=False)
        layout[f"xaxis{suffix}"] = x_axis
        layout[f"yaxis{suffix}"] = {"domain": ys[r], "anchor": f"x{suffix}", **AXIS_STYLE}
        second = None
        if secondary_y:
            second = f"y{n + i + 1}"
            layout[f"yaxis{n + i + 1}"] = {"overlaying": f"y{suffix}", "side": "right", "anchor": f"x{suffix}",
                                           "showgrid": False}
        refs.append((f"x{suffix}", f"y{suffix}", second))
        if i < len(titles):
            annotations.append(dict(text=titles[i], x=sum(xs[c]) / 2, y=ys[r][1], xref="paper", yref="paper",
                                    xanchor="center", yanchor="bottom", showarrow=False))
    layout["annotations"] = annotations
    return layout, refs


def _axis(ref: str) -> str:
    """Layout key of a trace's axis reference: 'x' -> 'xaxis', 'y3' -> 'yaxis3'."""
    return ref[0] + "axis" + ref[1:]


def display_tokens(tokens: Sequence[str]) -> list[str]:
    """Word-piece continuations ('##ing') shown joined to their word with a '·' mark ('·ing')."""
    return [("·" + t[2:]) if t.startswith("##") else t for t in tokens]


def prediction_bars(labels: Sequence[str], probabilities, top: int = 10) -> go.Figure:
    """Each class's probability, the most likely on top; of many classes only the `top` most likely."""
    probs = _array("probabilities", probabilities, 1)
    if len(labels) != len(probs):
        raise ValueError(f"labels ({len(labels)}) and probabilities ({len(probs)}) differ in length")
    order = np.argsort(probs)[-top:]
    fig = go.Figure(go.Bar(
        x=probs[order], y=[labels[i] for i in order], orientation="h",
        marker=dict(color=probs[order], colorscale=SCALE, cmin=0, cmax=1),
        text=[f"{p:.1%}" for p in probs[order]], textposition="auto",
        hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(xaxis=dict(title="probability", range=[0, 1], tickformat=".0%", **AXIS_STYLE),
                      yaxis=dict(title="class", **AXIS_STYLE))
    title = "Prediction" if len(order) == len(labels) else f"Prediction: the {len(order)} most likely of {len(labels)} classes"
    return _layout(fig, title, 160 + 40 * len(order))


SHORT_SEQUENCE = 40  # up to this many tokens: one column per token, heads as rows; longer ones wrap into lines
WRAP = 12  # tokens per line of a wrapped sequence: each cell is wide enough for its token at 800 px


def _token_grid(tokens: Sequence[str], rows: np.ndarray, exact: np.ndarray, names: list[str], summary: int | None,
                colours: dict, value: str, title: str) -> go.Figure:
    """A heatmap of per-token values: `rows` drawn (perhaps normalised), `exact` (same shape) on hover. Short
    sequences: one row per name, one column per token. Long ones: only one row (`summary`: its index, or None for
    the mean of the rows), wrapped into lines of WRAP tokens, each token's text in its cell, so every token stays
    readable however long the input."""
    labels = display_tokens(tokens)
    if len(tokens) <= SHORT_SEQUENCE:
        fig = go.Figure(go.Heatmap(
            z=rows, x=list(range(len(tokens))), y=names, **colours, colorbar=dict(title=value),
            customdata=np.array([labels] * len(rows)), text=exact.astype(str),
            hovertemplate=f"%{{y}}<br>token %{{x}}: %{{customdata}}<br>{value} %{{text}}<extra></extra>"))
        fig.update_layout(xaxis=dict(title="token", tickvals=list(range(len(tokens))), ticktext=labels, tickangle=-60,
                                     tickfont=dict(size=11), **AXIS_STYLE),
                          yaxis=dict(title="head", autorange="reversed", **AXIS_STYLE))
        return _layout(fig, title, 180 + 30 * len(rows))
    name, shown, hover = ("mean of heads", rows.mean(0), exact.mean(0)) if summary is None else (
        names[summary], rows[summary], exact[summary])
    lines = -(-len(tokens) // WRAP)
    pad = lines * WRAP - len(tokens)

    def wrapped(values, fill):
        return np.concatenate([np.asarray(values, dtype=object), np.full(pad, fill, dtype=object)]).reshape(lines, WRAP)

    starts = [f"{line * WRAP}–{min((line + 1) * WRAP, len(tokens)) - 1}" for line in range(lines)]
    fig = go.Figure(go.Heatmap(
        z=wrapped(shown, np.nan).astype(float), y=starts, text=wrapped(labels, ""), texttemplate="%{text}",
        textfont=dict(size=11), customdata=np.stack([wrapped(range(len(tokens)), ""), wrapped(hover.astype(str), "")], -1),
        **colours, colorbar=dict(title=value), xgap=1, ygap=1, hoverongaps=False,
        hovertemplate=f"token %{{customdata[0]}}: %{{text}}<br>{value} %{{customdata[1]}}<extra>{name}</extra>"))
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(title="tokens", autorange="reversed", type="category",
                                                            **AXIS_STYLE))
    return _layout(fig, f"{title}<br><sup>{name}; {len(tokens)} tokens in lines of {WRAP}</sup>", 120 + 24 * lines)


def _head_rows(values: np.ndarray, head: int | None) -> tuple[np.ndarray, list[str]]:
    """All heads' rows, or the chosen head's alone, with their names."""
    if head is None:
        return values, [f"head {h}" for h in range(len(values))]
    if not 0 <= head < len(values):
        raise ValueError(f"head must be in 0..{len(values) - 1}, got {head}")
    return values[head:head + 1], [f"head {head}"]


def token_heatmap(tokens: Sequence[str], weights, normalise_per_head: bool = False, head: int | None = None) -> go.Figure:
    """Heads x tokens heatmap of each head's density weight (mean gate over its channels); one head if chosen.
    normalise_per_head stretches each row to 0-1; a long input shows the mean of heads (or the head) wrapped."""
    w = _array("position_weights", weights, 2)
    if w.shape[1] != len(tokens):
        raise ValueError(f"position_weights has {w.shape[1]} positions but there are {len(tokens)} tokens")
    exact, names = _head_rows(w, head)
    rows = exact
    if normalise_per_head:
        lo, hi = exact.min(1, keepdims=True), exact.max(1, keepdims=True)
        rows = (exact - lo) / np.where(hi > lo, hi - lo, 1)
    value = "weight" + (" (per head 0-1)" if normalise_per_head else "")
    return _token_grid(tokens, rows, exact, names, None if head is None else 0, dict(colorscale=SCALE, zmin=0, zmax=1),
                       value, "Density weight per head over tokens")


def relevance_heatmap(tokens: Sequence[str], head_relevance, head: int | None = None,
                      normalise_per_head: bool = False) -> go.Figure:
    """Signed relevance over tokens on one diverging scale: all heads together (their sum) above each head, or
    the chosen head alone. normalise_per_head scales each row to its own largest magnitude; a long input shows
    the sum (or the head) wrapped."""
    r = _array("head_relevance", head_relevance, 2)
    if r.shape[1] != len(tokens):
        raise ValueError(f"head_relevance has {r.shape[1]} positions but there are {len(tokens)} tokens")
    exact, names = _head_rows(r, head)
    if head is None:
        exact, names = np.vstack([r.sum(0, keepdims=True), r]), ["all heads"] + names
    rows = exact
    if normalise_per_head:
        peak = np.abs(exact).max(1, keepdims=True)
        rows = exact / np.where(peak > 0, peak, 1)
    bound = float(np.abs(rows).max()) or 1.0
    return _token_grid(tokens, rows, exact, names, 0,
                       dict(colorscale=DIVERGING, zmin=-bound, zmax=bound, zmid=0),
                       "relevance" + (" (per head)" if normalise_per_head else ""),
                       "Relevance: what drove the prediction (purple: for it, orange: against)")


@functools.cache
def _colour_table(scale: str = SCALE) -> np.ndarray:
    """256 colours of a scale: sampling Plotly's scale per token costs ~0.5 ms each."""
    import plotly.colors as pc

    return np.array(pc.sample_colorscale(scale, list(np.linspace(0, 1, 256))))


def highlighted_text_html(tokens: Sequence[str], weights, head: int | None = None, signed: bool = False) -> str:
    """The tokens as HTML, each on a background of the chosen head's value, or of all heads together.

    weights: (heads, tokens). Gates (signed=False, cividis 0-1): all heads = their mean. Relevance (signed=True,
    diverging around 0, scaled to the largest magnitude): all heads = their sum, the position's relevance."""
    w = _array("head_relevance" if signed else "position_weights", weights, 2)
    if w.shape[1] != len(tokens):
        raise ValueError(f"{'head_relevance' if signed else 'position_weights'} has {w.shape[1]} positions but there "
                         f"are {len(tokens)} tokens")
    if head is not None and not 0 <= head < w.shape[0]:
        raise ValueError(f"head must be in 0..{w.shape[0] - 1}, got {head}")
    values = w[head] if head is not None else (w.sum(0) if signed else w.mean(0))
    if signed:
        shade = 0.5 + 0.5 * values / (np.abs(values).max() or 1.0)  # 0.5 = no relevance
        light = np.abs(shade - 0.5) < 0.3  # the diverging scale is light in the middle
    else:
        shade, light = values, values > 0.55  # cividis is light at its top
    colours = _colour_table(DIVERGING if signed else SCALE)[np.clip(np.round(shade * 255), 0, 255).astype(int)]
    name = "relevance" if signed else "weight"
    spans = []
    for token, value, colour, is_light in zip(tokens, values, colours, light):
        ink = "#000" if is_light else "#fff"
        text = html.escape(token[2:] if token.startswith("##") else token)
        gap = "" if token.startswith("##") else " "
        spans.append(f'{gap}<span title="{name} {value:.6g}" style="background:{colour};color:{ink};'
                     f'padding:1px 2px;border-radius:3px">{text}</span>')
    which = f"head {head}" if head is not None else ("sum over heads" if signed else "mean over heads")
    legend = ("relevance: purple supports the prediction, orange speaks against it" if signed
              else "density weight, cividis 0 → 1")
    return (f'<div class="daam-highlight" style="line-height:2;font-size:16px">{"".join(spans).strip()}</div>'
            f'<div style="font-size:12px;opacity:.7">background = {legend} ({which})</div>')


def mixture_curves(density: DensityStage | dict, stage: str = "positions", title: str | None = None,
                   head: int | None = None, z_counts: np.ndarray | None = None,
                   z_name: str = "this input's z") -> go.Figure:
    """Per head (or the chosen head alone): the learned gate over z (solid), its components (dashed), and the
    histogram of the z-values it saw: `z_counts` (heads, bins), how many fell in each of daam.explanation.Z_EDGES'
    bins (an input's, or summed over many).

    density: a DensityStage, or a dict with its "grid", "curve", "components" and "mode"."""
    density = density if isinstance(density, dict) else vars(density)
    grid = _array(f"density.{stage}.grid", density["grid"], 1)
    curve = _array(f"density.{stage}.curve", density["curve"], 2)
    comps = _array(f"density.{stage}.components", density["components"], 3)
    if curve.shape[1] != len(grid) or comps.shape[2] != len(grid) or comps.shape[0] != curve.shape[0]:
        raise ValueError(f"density.{stage}: curve {curve.shape} and components {comps.shape} do not match grid {grid.shape}")
    if z_counts is not None:
        z_counts = _array("z_counts", z_counts, 2)
        if z_counts.shape != (curve.shape[0], len(Z_EDGES) - 1):
            raise ValueError(f"z_counts has shape {z_counts.shape}; the density has {curve.shape[0]} heads and "
                             f"Z_EDGES {len(Z_EDGES) - 1} bins")
    if head is not None:
        if not 0 <= head < curve.shape[0]:
            raise ValueError(f"head must be in 0..{curve.shape[0] - 1}, got {head}")
        curve, comps = curve[head:head + 1], comps[head:head + 1]
        z_counts = None if z_counts is None else z_counts[head:head + 1]
        title = title or f"Learned density: {stage} stage, head {head}"
    heads = curve.shape[0]
    cols = min(heads, 2)
    rows = -(-heads // cols)
    layout, refs = _subplot_grid(rows, cols, [f"head {h}" for h in range(heads)] if heads > 1 else [],
                                 secondary_y=z_counts is not None, hspace=0.12, vspace=0.14)
    product = density.get("mode") == "product"
    bin_centres, bin_ends = (Z_EDGES[:-1] + Z_EDGES[1:]) / 2, np.stack([Z_EDGES[:-1], Z_EDGES[1:]], -1)  # (B,), (B, 2)
    traces = []  # plain dicts: go.Figure validates them once, trace objects would be validated twice
    for h in range(heads):
        x, y, y_count = refs[h]
        if z_counts is not None:  # bars over the bins (the end bins also hold the z-values beyond them)
            traces.append(dict(type="bar", x=bin_centres, y=z_counts[h], width=Z_EDGES[1] - Z_EDGES[0],
                               customdata=bin_ends, name=z_name,
                               marker_color="#999", opacity=0.45, showlegend=h == 0, legendgroup="hist",
                               xaxis=x, yaxis=y_count,
                               hovertemplate="z %{customdata[0]:.1f} to %{customdata[1]:.1f}<br>count %{y}<extra></extra>"))
            if z_counts[h].max() < 5:  # whole counts: no ticks at 0.5
                layout[_axis(y_count)]["dtick"] = 1
            if h % cols == cols - 1:  # axis titles on the outer edges only: inner ones would collide
                layout[_axis(y_count)]["title"] = "count"
        for k in range(comps.shape[1]):
            traces.append(dict(type="scatter", x=grid, y=comps[h, k], mode="lines", name=f"component {k}", xaxis=x, yaxis=y,
                                     line=dict(dash="dash", width=1.5, color=LINE_COLOURS[(k + 1) % len(LINE_COLOURS)]),
                                     showlegend=h == 0, legendgroup=f"c{k}",
                                     hovertemplate=f"component {k}<br>z %{{x}}<br>value %{{y}}<extra></extra>"))
        traces.append(dict(type="scatter", x=grid, y=curve[h], mode="lines", xaxis=x, yaxis=y,
                                 name="product = one Gaussian" if product else "mixture gate",
                                 line=dict(width=3, color=LINE_COLOURS[0]), showlegend=h == 0, legendgroup="gate",
                                 hovertemplate="gate<br>z %{x}<br>value %{y}<extra></extra>"))
        if h // cols == rows - 1:  # the bottom row's x titles only: upper ones would run into the head titles below
            layout[_axis(x)]["title"] = f"z (standardised {density.get('standardises', 'input')})"
        layout[_axis(y)].update(range=[0, 1.05], **({"title": "gate"} if h % cols == 0 else {}))
    fig = go.Figure(data=traces, layout=layout)
    title = (title or f"Learned density per head: {stage} stage") + (" (product mode: one Gaussian)" if product else "")
    fig.update_layout(legend=dict(orientation="h", y=-0.12 if rows > 1 else -0.3))  # below the x-axis title
    return _layout(fig, title, 120 + 260 * rows)


def layer_importance(importance, layer_names: Sequence[str], group: int = 8) -> go.Figure:
    """Importance Factor: layers x feature groups heatmap (mean gate), with per-layer and per-feature marginals."""
    imp = _array("layer_importance", importance, 2)
    if imp.shape[0] != len(layer_names):
        raise ValueError(f"layer_importance has {imp.shape[0]} layers but {len(layer_names)} layer names")
    groups = max(1, imp.shape[1] // group)
    grouped = imp[:, : groups * group].reshape(imp.shape[0], groups, group).mean(-1) if group > 1 else imp
    starts = [g * group for g in range(grouped.shape[1])]
    # Cells: 0 = per-feature bars (top), 2 = heatmap, 3 = per-layer bars (right); cell 1 stays empty.
    layout, refs = _subplot_grid(2, 2, col_widths=[0.82, 0.18], row_heights=[0.22, 0.78], hspace=0.02, vspace=0.03)
    (tx, ty, _), _, (hx, hy, _), (rx, ry, _) = refs
    layout.pop("xaxis2"), layout.pop("yaxis2")
    layout[_axis(tx)].update(matches=hx, showticklabels=False)
    layout[_axis(ry)].update(matches=hy, showticklabels=False, autorange="reversed")
    layout[_axis(hx)]["title"] = f"feature (groups of {group})"
    layout[_axis(hy)].update(title="layer", autorange="reversed")
    layout[_axis(rx)]["title"] = "mean"
    fig = go.Figure(data=[
        go.Heatmap(z=grouped, x=starts, y=list(layer_names), colorscale=SCALE, zmin=0, zmax=1, xaxis=hx, yaxis=hy,
                   colorbar=dict(title="mean gate", x=1.02),
                   hovertemplate="%{y}<br>features %{x}–" + f"(+{group - 1})" + "<br>mean gate %{z}<extra></extra>"),
        go.Bar(x=starts, y=grouped.mean(0), marker_color=LINE_COLOURS[0], showlegend=False, xaxis=tx, yaxis=ty,
               hovertemplate="features %{x}<br>mean over layers %{y}<extra></extra>"),
        go.Bar(y=list(layer_names), x=imp.mean(1), orientation="h", marker_color=LINE_COLOURS[0], showlegend=False,
               xaxis=rx, yaxis=ry, hovertemplate="%{y}<br>mean over features %{x}<extra></extra>"),
    ], layout=layout)
    return _layout(fig, "Layer importance (Importance Factor)", 520)


def _grid_side(name: str, positions: int) -> int:
    side = int(round(positions ** 0.5))
    if side * side != positions:
        raise ValueError(f"{name} has {positions} positions, not a square patch grid")
    return side


def image_overlay(image, weights, head: int | None = None, alpha: float = 0.55, all_heads: bool = False,
                  signed: bool = False) -> go.Figure:
    """The preprocessed image with a head's (or the mean) patch weights blended over it.

    image: (H, W) or (H, W, 3) uint8; weights: (heads, patches) over a square patch grid.
    all_heads=True draws small multiples: every head and the mean. signed=True shows relevance instead
    (weights (1, patches), any sign) on the diverging scale, centred on 0."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.asarray(image).shape}")
    w = _array("position_weights", weights, 2)
    side = _grid_side("position_weights", w.shape[1])
    if head is not None and not 0 <= head < w.shape[0]:
        raise ValueError(f"head must be in 0..{w.shape[0] - 1}, got {head}")
    if signed:
        maps = [("relevance", w.sum(0))]
    elif all_heads:
        maps = [(f"head {h}", w[h]) for h in range(w.shape[0])] + [("mean", w.mean(0))]
    else:
        maps = [("mean of heads" if head is None else f"head {head}", w.mean(0) if head is None else w[head])]
    name_of_value = "relevance" if signed else "weight"
    if signed:
        limit = float(np.abs(maps[0][1]).max()) or 1.0
        scale_range = dict(colorscale=DIVERGING, zmin=-limit, zmax=limit)
    else:
        scale_range = dict(colorscale=SCALE, zmin=0, zmax=1)
    cols = min(len(maps), 3)
    rows = -(-len(maps) // cols)
    layout, refs = _subplot_grid(rows, cols, [name for name, _ in maps], hspace=0.03, vspace=0.08)
    H, W = img.shape[:2]
    # Small multiples show the picture at half size: the figure stays within its JSON budget.
    source = png_data_uri(img[::2, ::2] if all_heads else img, compress_level=9)
    scale = 2 if all_heads else 1
    patch = np.stack(np.indices((side, side)), axis=-1)  # (side, side, 2): row, column of each patch
    traces = []
    for i, (name, values) in enumerate(maps):
        x, y, _ = refs[i]
        traces.append(go.Image(source=source, hoverinfo="skip", dx=scale, dy=scale, xaxis=x, yaxis=y))
        # One cell per patch, stretched over the patch's pixels: 49 numbers, not H*W.
        traces.append(go.Heatmap(
            z=values.reshape(side, side), x0=W / side / 2, dx=W / side, y0=H / side / 2, dy=H / side,
            **scale_range, opacity=alpha, showscale=i == 0, colorbar=dict(title=name_of_value),
            customdata=patch, xaxis=x, yaxis=y,
            hovertemplate=f"{name}<br>patch row %{{customdata[0]}}, column %{{customdata[1]}}<br>{name_of_value} %{{z}}<extra></extra>"))
        layout[_axis(x)].update(showticklabels=False, range=[0, W])
        layout[_axis(y)].update(showticklabels=False, range=[H, 0])
    fig = go.Figure(data=traces, layout=layout)
    if signed:
        title = "Relevance per cell: purple supports the prediction, orange speaks against it"
    else:
        title = "Density weight over image patches" + (" (every head and the mean)" if all_heads else f" ({maps[0][0]})")
    return _layout(fig, title, 90 + rows * (NOMINAL_WIDTH // cols - 30))


def audio_view(log_mel, frame_times, weights, position_times, heads: Sequence[int] | None = None,
               max_frames: int = 400, signed: bool = False) -> go.Figure:
    """Log-mel spectrogram above each head's weight over time, on one time axis in seconds.

    log_mel: (mels, frames) with frame_times (frames,) in s; weights: (heads, positions) at position_times (s).
    signed=True shows relevance instead: weights (1, positions), any sign, one line around zero."""
    mel = _array("log_mel", log_mel, 2)
    t_mel = _array("frame_times", frame_times, 1)
    w = _array("position_weights", weights, 2)
    t_pos = _array("position_times", position_times, 1)
    if mel.shape[1] != len(t_mel):
        raise ValueError(f"log_mel has {mel.shape[1]} frames but frame_times has {len(t_mel)}")
    if w.shape[1] != len(t_pos):
        raise ValueError(f"position_weights has {w.shape[1]} positions but position_times has {len(t_pos)}")
    heads = list(range(w.shape[0])) if heads is None else list(heads)
    if any(not 0 <= h < w.shape[0] for h in heads):
        raise ValueError(f"heads must be in 0..{w.shape[0] - 1}, got {heads}")
    step = max(1, -(-mel.shape[1] // max_frames))  # keep the figure JSON small on long clips
    # The spectrogram is context, sent as float32 (half the bytes); the head weights keep full precision.
    mel, t_mel = mel[:, ::step].astype(np.float32), t_mel[::step]
    layout, ((mx, my, _), (wx, wy, _)) = _subplot_grid(2, 1, row_heights=[0.55, 0.45], vspace=0.06, shared_x=True)
    traces = [go.Heatmap(z=mel, x=t_mel, y=list(range(mel.shape[0])), colorscale=SCALE, xaxis=mx, yaxis=my,
                         colorbar=dict(title="log-mel", y=0.75, len=0.5),
                         hovertemplate="t %{x:.3f} s<br>mel bin %{y}<br>%{z:.2f}<extra></extra>")]
    value = "relevance" if signed else "weight"
    names = ["relevance"] if signed else [f"head {h}" for h in heads]
    traces += [go.Scatter(x=t_pos, y=w[h], mode="lines", name=name, xaxis=wx, yaxis=wy,
                          line=dict(color=LINE_COLOURS[h % len(LINE_COLOURS)], width=2),
                          fill="tozeroy" if signed else None,
                          hovertemplate=f"{name}<br>t %{{x}} s<br>{value} %{{y}}<extra></extra>")
               for h, name in zip(heads, names)]
    layout[_axis(my)]["title"] = "mel bin"
    bound = float(np.abs(w).max()) * 1.05 or 1.0
    layout[_axis(wy)].update(title=value, range=[-bound, bound] if signed else [0, 1.02])
    layout[_axis(wx)]["title"] = "time (s)"
    layout["legend"] = dict(orientation="h", y=-0.15)
    fig = go.Figure(data=traces, layout=layout)
    title = ("Spectrogram and relevance over time<br><sup>above zero supports the prediction, below speaks against it</sup>"
             if signed else "Spectrogram and density weight per head over time")
    return _layout(fig, title, 560)


def _mechanism_label(row: dict) -> str:
    p = _array(f"{row['name']}.probabilities", row["probabilities"], 1)
    return f"{row['name']}: {row['predicted_label']} ({p.max():.0%})"


def mechanism_weights(comparison: dict, kind: str = "text") -> go.Figure:
    """Every mechanism's per-position weights for one input on one shared 0-to-max scale, its prediction beside it.

    comparison: daam.compare.compare_input's dict, {"position_labels", "labels", "rows": [{"name", "title",
    "predicted_label", "probabilities", "position_weights"}]}. Each mechanism's weights sum to 1 over the
    positions (DAAM: its mean raw gate, normalised). Images (kind "image") get one small grid per mechanism."""
    rows, labels = comparison["rows"], list(comparison["position_labels"])
    if not rows:
        raise ValueError("comparison has no rows")
    weights = [_array(f"{r['name']}.position_weights", r["position_weights"], 1) for r in rows]
    n = len(labels)
    for r, w in zip(rows, weights):
        if len(w) != n:
            raise ValueError(f"{r['name']} has {len(w)} weights for {n} positions")
    top = max(float(w.max()) for w in weights) or 1.0
    names = [_mechanism_label(r) for r in rows]
    if kind == "image":
        side = _grid_side("position_weights", n)
        cols = 4
        grid_rows = -(-len(rows) // cols)
        titles = [name.replace(": ", "<br>", 1) for name in names]  # two short lines fit a quarter of 800 px
        layout, refs = _subplot_grid(grid_rows, cols, titles, hspace=0.04, vspace=0.14)
        traces = []
        for i, w in enumerate(weights):
            x, y, _ = refs[i]
            traces.append(go.Heatmap(z=w.reshape(side, side), colorscale=SCALE, zmin=0, zmax=top, showscale=i == 0,
                                     colorbar=dict(title="weight"), xaxis=x, yaxis=y,
                                     hovertemplate=f"{rows[i]['name']}<br>row %{{y}}, column %{{x}}<br>weight %{{z:.4f}}<extra></extra>"))
            layout[_axis(y)].update(autorange="reversed", scaleanchor=x, showticklabels=False, showgrid=False, zeroline=False)
            layout[_axis(x)].update(showticklabels=False, showgrid=False, zeroline=False)
        for j in range(len(rows), grid_rows * cols):  # empty cells of the last row
            x, y, _ = refs[j]
            layout[_axis(x)]["visible"] = layout[_axis(y)]["visible"] = False
        fig = go.Figure(data=traces, layout=layout)
        fig.update_annotations(font_size=11)
        return _layout(fig, "Where each mechanism looks: weight per cell (shared scale)", 60 + 230 * grid_rows)
    shown = display_tokens(labels) if kind == "text" else labels
    z = np.stack(weights)
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n)), y=names, colorscale=SCALE, zmin=0, zmax=top,
                               customdata=np.array([shown] * len(rows)), colorbar=dict(title="weight"),
                               hovertemplate="%{y}<br>%{customdata}<br>weight %{z:.4f}<extra></extra>"))
    step = max(1, n // 60)
    fig.update_layout(xaxis=dict(title="position", tickvals=list(range(0, n, step)), ticktext=shown[::step],
                                 tickangle=-60, **AXIS_STYLE),
                      yaxis=dict(autorange="reversed", automargin=True, **AXIS_STYLE))
    return _layout(fig, "Where each mechanism looks: weight per position (shared scale)", 160 + 34 * len(rows))


def mechanism_curves(rows: Sequence[dict]) -> go.Figure:
    """Validation accuracy per epoch of each mechanism (mean over seeds): how fast each converges."""
    if not rows:
        raise ValueError("rows is empty")
    traces = []
    for i, row in enumerate(rows):
        curve = _array(f"{row['name']}.curve", row["curve"], 1)
        traces.append(go.Scatter(x=list(range(1, len(curve) + 1)), y=curve, mode="lines+markers", name=row["name"],
                                 line=dict(color=LINE_COLOURS[i % len(LINE_COLOURS)], width=3 if i == 0 else 2),
                                 hovertemplate=f"{row['name']}<br>epoch %{{x}}<br>val accuracy %{{y:.4f}}<extra></extra>"))
    fig = go.Figure(data=traces, layout=dict(xaxis=dict(title="epoch", dtick=1, **AXIS_STYLE),
                                             yaxis=dict(title="validation accuracy (mean over seeds)", **AXIS_STYLE)))
    return _layout(fig, "Convergence", 380)


def accuracy_vs_cost(rows: Sequence[dict]) -> go.Figure:
    """Test accuracy (mean ± sd over seeds) against the head's cost per item, one marker per mechanism."""
    if not rows:
        raise ValueError("rows is empty")
    traces = []
    for i, row in enumerate(rows):
        traces.append(go.Scatter(
            x=[row["ms_per_item"]], y=[row["accuracy_mean"]], mode="markers", name=row["name"],
            error_y=dict(type="data", array=[row["accuracy_sd"]]),
            marker=dict(size=13, color=LINE_COLOURS[i % len(LINE_COLOURS)], symbol="diamond" if i == 0 else "circle"),
            customdata=[[row["parameters"], row["faithfulness"], row["accuracy_sd"]]],
            hovertemplate=(f"{row.get('title', row['name'])}<br>accuracy %{{y:.4f}} ± %{{customdata[2]:.4f}}"
                           "<br>%{x:.3f} ms per item<br>%{customdata[0]:,} parameters"
                           "<br>deletion drop at 20%: %{customdata[1]:.3f}<extra></extra>")))
    # Labelled 1-2-3-5 ticks: Plotly's own log ticks label the 2s and 5s of a decade by their first digit only ("5"),
    # and the heads' costs often span less than a decade, where 1-2-5 alone leaves two ticks.
    ticks = [m * 10.0 ** e for e in range(-3, 4) for m in (1, 2, 3, 5)]
    # The axis runs from a tick to a tick, so every marker has a labelled value on either side.
    costs = [row["ms_per_item"] for row in rows]
    low = max([t for t in ticks if t <= min(costs) / 1.1] or ticks[:1])
    high = min([t for t in ticks if t >= max(costs) * 1.1] or ticks[-1:])
    fig = go.Figure(data=traces, layout=dict(xaxis=dict(title="ms per item (head on cached features, log)", type="log",
                                                        tickvals=ticks, ticktext=[f"{t:g}" for t in ticks],
                                                        range=[np.log10(low), np.log10(high)], **AXIS_STYLE),
                                             yaxis=dict(title="test accuracy (mean ± sd over seeds)", **AXIS_STYLE)))
    return _layout(fig, "Accuracy against cost", 420)


def gated_sample(x, gate) -> go.Figure:
    """A sample input and what the gate lets through: histograms of x and of y = x * gate(z)."""
    xs = _array("x", x, 1)
    g = _array("gate", gate, 1)
    if len(xs) != len(g):
        raise ValueError(f"x has {len(xs)} values but gate has {len(g)}")
    fig = go.Figure(data=[
        dict(type="histogram", x=xs, name="input x", opacity=0.55, marker_color=LINE_COLOURS[1], nbinsx=60,
             hovertemplate="x %{x}<br>count %{y}<extra></extra>"),
        dict(type="histogram", x=xs * g, name="output x · gate", opacity=0.55, marker_color=LINE_COLOURS[0], nbinsx=60,
             hovertemplate="y %{x}<br>count %{y}<extra></extra>"),
    ], layout=dict(barmode="overlay", xaxis=dict(title="value", **AXIS_STYLE), yaxis=dict(title="count", **AXIS_STYLE),
                   legend=dict(orientation="h", y=-0.2)))
    return _layout(fig, "A sample input before and after the gate", 360)


def training_curves(curves: dict) -> go.Figure:
    """Validation accuracy per epoch for every model and seed: {model: {seed: {"val_accuracy": [...]}}}."""
    if not curves:
        raise ValueError("curves is empty")
    traces = []
    for i, (model, seeds) in enumerate(curves.items()):
        for j, (seed, c) in enumerate(seeds.items()):
            acc = _array(f"curves.{model}.{seed}.val_accuracy", c["val_accuracy"], 1)
            traces.append(dict(type="scatter", x=list(range(1, len(acc) + 1)), y=acc, mode="lines+markers",
                               name=model if j == 0 else None, showlegend=j == 0, legendgroup=model,
                               line=dict(color=LINE_COLOURS[i % len(LINE_COLOURS)]),
                               hovertemplate=f"{model}, seed {seed}<br>epoch %{{x}}<br>val accuracy %{{y}}<extra></extra>"))
    fig = go.Figure(data=traces, layout=dict(xaxis=dict(title="epoch", **AXIS_STYLE),
                                             yaxis=dict(title="validation accuracy", **AXIS_STYLE)))
    return _layout(fig, "Training curves (each line a seed)", 380)


def deletion_check(fractions: Sequence[float], relevance: Sequence[float], random: Sequence[float],
                   unit: str = "words") -> go.Figure:
    """The deletion test on one input: the predicted class's probability drop when the most relevant units are
    removed, beside removing random ones. A faithful explanation's line lies well above random's."""
    x = _array("fractions", fractions, 1)
    lines = {"most relevant first": _array("relevance", relevance, 1), "random (mean of 3 orders)": _array("random", random, 1)}
    if any(len(v) != len(x) for v in lines.values()):
        raise ValueError("relevance and random need one drop per fraction")
    fig = go.Figure([go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=dict(color=LINE_COLOURS[i], width=3),
                                hovertemplate=f"{name}<br>%{{x:.0%}} of {unit} removed<br>drop %{{y}}<extra></extra>")
                     for i, (name, y) in enumerate(lines.items())])
    fig.update_layout(xaxis=dict(title=f"share of {unit} removed", tickformat=".0%", **AXIS_STYLE),
                      yaxis=dict(title="drop of the predicted probability", **AXIS_STYLE),
                      legend=dict(orientation="h", y=-0.3))
    return _layout(fig, "Can I trust this? Removing what the explanation ranks highest", 380)
