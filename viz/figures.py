"""Plotly figures of a DAAM Explanation. Plain arrays in, go.Figure out: no torch, no gradio.

Colour: one perceptually uniform, colour-blind-safe scale (cividis) for every weight, on a
shared 0-1 range unless per-head normalisation is asked for."""

from __future__ import annotations

import functools
import html
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SCALE = "Cividis"
LINE_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]  # Okabe-Ito
WIDTH = 900
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


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    # Transparent backgrounds follow the page's theme. No named template: applying one costs ~15 ms a figure.
    fig.update_layout(title=dict(text=title, x=0.01), width=WIDTH, height=height, font=FONT,
                      margin=dict(l=70, r=30, t=60, b=60),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    fig.update_xaxes(gridcolor=GRID_COLOUR, zerolinecolor=GRID_COLOUR)
    fig.update_yaxes(gridcolor=GRID_COLOUR, zerolinecolor=GRID_COLOUR)
    return fig


def display_tokens(tokens: Sequence[str]) -> list[str]:
    """Word-piece continuations ('##ing') shown joined to their word with a '·' mark ('·ing')."""
    return [("·" + t[2:]) if t.startswith("##") else t for t in tokens]


def prediction_bars(labels: Sequence[str], probabilities) -> go.Figure:
    probs = _array("probabilities", probabilities, 1)
    if len(labels) != len(probs):
        raise ValueError(f"labels ({len(labels)}) and probabilities ({len(probs)}) differ in length")
    order = np.argsort(probs)
    fig = go.Figure(go.Bar(
        x=probs[order], y=[labels[i] for i in order], orientation="h",
        marker=dict(color=probs[order], colorscale=SCALE, cmin=0, cmax=1),
        text=[f"{p:.1%}" for p in probs[order]], textposition="auto",
        hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_xaxes(title_text="probability", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="class")
    return _layout(fig, "Prediction", 120 + 28 * len(labels))


def token_heatmap(tokens: Sequence[str], weights, normalise_per_head: bool = False) -> go.Figure:
    """Heads x tokens heatmap of each head's density weight (mean gate over its channels)."""
    w = _array("position_weights", weights, 2)
    if w.shape[1] != len(tokens):
        raise ValueError(f"position_weights has {w.shape[1]} positions but there are {len(tokens)} tokens")
    shown = w
    if normalise_per_head:
        lo, hi = w.min(1, keepdims=True), w.max(1, keepdims=True)
        shown = (w - lo) / np.where(hi > lo, hi - lo, 1)
    labels = display_tokens(tokens)
    heads = [f"head {h}" for h in range(w.shape[0])]
    fig = go.Figure(go.Heatmap(
        z=shown, x=list(range(len(tokens))), y=heads, colorscale=SCALE,
        zmin=0, zmax=1, customdata=np.array([labels] * w.shape[0]), text=w.astype(str),
        colorbar=dict(title="weight" + (" (per head 0-1)" if normalise_per_head else "")),
        hovertemplate="%{y}<br>token %{x}: %{customdata}<br>weight %{text}<extra></extra>"))
    step = max(1, len(tokens) // 60)  # keep tick labels readable at 900 px
    fig.update_xaxes(title_text="token", tickvals=list(range(0, len(tokens), step)),
                     ticktext=labels[::step], tickangle=-60)
    fig.update_yaxes(title_text="head", autorange="reversed")
    return _layout(fig, "Density weight per head over tokens", 180 + 30 * w.shape[0])


@functools.cache
def _colour_table() -> np.ndarray:
    """256 colours of SCALE: sampling Plotly's scale per token costs ~0.5 ms each."""
    import plotly.colors as pc

    return np.array(pc.sample_colorscale(SCALE, list(np.linspace(0, 1, 256))))


def highlighted_text_html(tokens: Sequence[str], weights, head: int | None = None) -> str:
    """The tokens as HTML, each on a background of the chosen head's weight (or the mean over heads)."""
    w = _array("position_weights", weights, 2)
    if w.shape[1] != len(tokens):
        raise ValueError(f"position_weights has {w.shape[1]} positions but there are {len(tokens)} tokens")
    if head is not None and not 0 <= head < w.shape[0]:
        raise ValueError(f"head must be in 0..{w.shape[0] - 1}, got {head}")
    values = w.mean(0) if head is None else w[head]
    colours = _colour_table()[np.clip(np.round(values * 255), 0, 255).astype(int)]
    spans = []
    for token, value, colour in zip(tokens, values, colours):
        ink = "#000" if value > 0.55 else "#fff"  # contrast against cividis' dark and light ends
        text = html.escape(token[2:] if token.startswith("##") else token)
        gap = "" if token.startswith("##") else " "
        spans.append(f'{gap}<span title="weight {value:.6g}" style="background:{colour};color:{ink};'
                     f'padding:1px 2px;border-radius:3px">{text}</span>')
    which = "mean over heads" if head is None else f"head {head}"
    return (f'<div class="daam-highlight" style="line-height:2;font-size:16px">{"".join(spans).strip()}</div>'
            f'<div style="font-size:12px;opacity:.7">background = density weight ({which}), cividis 0 → 1</div>')


def mixture_curves(density: dict, z_values: Sequence | None = None, stage: str = "positions") -> go.Figure:
    """Per head: the learned gate over z (solid), its components (dashed), this input's z histogram."""
    grid = _array(f"density.{stage}.grid", density["grid"], 1)
    curve = _array(f"density.{stage}.curve", density["curve"], 2)
    comps = _array(f"density.{stage}.components", density["components"], 3)
    if curve.shape[1] != len(grid) or comps.shape[2] != len(grid) or comps.shape[0] != curve.shape[0]:
        raise ValueError(f"density.{stage}: curve {curve.shape} and components {comps.shape} do not match grid {grid.shape}")
    heads = curve.shape[0]
    if z_values is not None and len(z_values) != heads:
        raise ValueError(f"z_values has {len(z_values)} heads but the density has {heads}")
    cols = min(heads, 2)
    rows = -(-heads // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in range(heads)],
                        specs=[[{"secondary_y": True}] * cols for _ in range(rows)],
                        horizontal_spacing=0.1, vertical_spacing=0.12)
    product = density.get("mode") == "product"
    traces, rows_, cols_, secondary = [], [], [], []

    def add(trace, h, on_secondary=False):
        traces.append(trace)
        rows_.append(h // cols + 1)
        cols_.append(h % cols + 1)
        secondary.append(on_secondary)

    for h in range(heads):
        if z_values is not None:
            z = _array(f"z_values[{h}]", z_values[h], 1, allow_empty=True)
            add(go.Histogram(x=z, name="this input's z", marker_color="#999", opacity=0.45,
                             xbins=dict(start=grid[0], end=grid[-1], size=(grid[-1] - grid[0]) / 40),
                             showlegend=h == 0, legendgroup="hist",
                             hovertemplate="z %{x}<br>count %{y}<extra></extra>"), h, on_secondary=True)
        for k in range(comps.shape[1]):
            add(go.Scatter(x=grid, y=comps[h, k], mode="lines", name=f"component {k}",
                           line=dict(dash="dash", width=1.5, color=LINE_COLOURS[(k + 1) % len(LINE_COLOURS)]),
                           showlegend=h == 0, legendgroup=f"c{k}",
                           hovertemplate=f"component {k}<br>z %{{x}}<br>value %{{y}}<extra></extra>"), h)
        add(go.Scatter(x=grid, y=curve[h], mode="lines", name="product = one Gaussian" if product else "mixture gate",
                       line=dict(width=3, color=LINE_COLOURS[0]), showlegend=h == 0, legendgroup="gate",
                       hovertemplate="gate<br>z %{x}<br>value %{y}<extra></extra>"), h)
    fig.add_traces(traces, rows=rows_, cols=cols_, secondary_ys=secondary)
    fig.update_xaxes(title_text="z (standardised input)")
    fig.update_yaxes(title_text="gate", range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="count", showgrid=False, secondary_y=True)
    title = "Learned density per head" + (" (product mode: the factors collapse to one Gaussian)" if product else "")
    fig.update_layout(legend=dict(orientation="h", y=-0.12))
    return _layout(fig, title, 120 + 260 * rows)


def layer_importance(importance, layer_names: Sequence[str], group: int = 8) -> go.Figure:
    """Importance Factor: layers x feature groups heatmap (mean gate), with per-layer and per-feature marginals."""
    imp = _array("layer_importance", importance, 2)
    if imp.shape[0] != len(layer_names):
        raise ValueError(f"layer_importance has {imp.shape[0]} layers but {len(layer_names)} layer names")
    groups = max(1, imp.shape[1] // group)
    grouped = imp[:, : groups * group].reshape(imp.shape[0], groups, group).mean(-1) if group > 1 else imp
    starts = [g * group for g in range(grouped.shape[1])]
    fig = make_subplots(rows=2, cols=2, column_widths=[0.82, 0.18], row_heights=[0.22, 0.78],
                        shared_xaxes="columns", shared_yaxes="rows", horizontal_spacing=0.02, vertical_spacing=0.03)
    fig.add_trace(go.Heatmap(z=grouped, x=starts, y=list(layer_names), colorscale=SCALE, zmin=0, zmax=1,
                             colorbar=dict(title="mean gate", x=1.02),
                             hovertemplate="%{y}<br>features %{x}–" + f"(+{group - 1})" + "<br>mean gate %{z}<extra></extra>"),
                  row=2, col=1)
    fig.add_trace(go.Bar(x=starts, y=grouped.mean(0), marker_color=LINE_COLOURS[0], showlegend=False,
                         hovertemplate="features %{x}<br>mean over layers %{y}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(y=list(layer_names), x=imp.mean(1), orientation="h", marker_color=LINE_COLOURS[0],
                         showlegend=False, hovertemplate="%{y}<br>mean over features %{x}<extra></extra>"), row=2, col=2)
    fig.update_xaxes(title_text=f"feature (groups of {group})", row=2, col=1)
    fig.update_yaxes(title_text="layer", autorange="reversed", row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=2, col=2)
    fig.update_xaxes(title_text="mean", row=2, col=2)
    return _layout(fig, "Layer importance (Importance Factor)", 520)


def _grid_side(name: str, positions: int) -> int:
    side = int(round(positions ** 0.5))
    if side * side != positions:
        raise ValueError(f"{name} has {positions} positions, not a square patch grid")
    return side


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) image as a PNG data URI: a few kB in the figure JSON instead of H*W*3 numbers."""
    import base64
    import io

    from PIL import Image

    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3 and (image == image[:, :, :1]).all():
        image = image[:, :, 0]  # grey stored once, not three times
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_overlay(image, weights, head: int | None = None, alpha: float = 0.55, all_heads: bool = False) -> go.Figure:
    """The preprocessed image with a head's (or the mean) patch weights blended over it.

    image: (H, W) or (H, W, 3) uint8; weights: (heads, patches) over a square patch grid.
    all_heads=True draws small multiples: every head and the mean."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.asarray(image).shape}")
    w = _array("position_weights", weights, 2)
    side = _grid_side("position_weights", w.shape[1])
    if head is not None and not 0 <= head < w.shape[0]:
        raise ValueError(f"head must be in 0..{w.shape[0] - 1}, got {head}")
    maps = ([(f"head {h}", w[h]) for h in range(w.shape[0])] + [("mean", w.mean(0))] if all_heads
            else [("mean of heads" if head is None else f"head {head}", w.mean(0) if head is None else w[head])])
    cols = min(len(maps), 3)
    rows = -(-len(maps) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[name for name, _ in maps],
                        horizontal_spacing=0.03, vertical_spacing=0.08)
    H, W = img.shape[:2]
    # Small multiples show the picture at half size: the figure stays within its JSON budget.
    source = png_data_uri(img[::2, ::2] if all_heads else img)
    patch = np.stack(np.indices((side, side)), axis=-1)  # (side, side, 2): row, column of each patch
    for i, (name, values) in enumerate(maps):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Image(source=source, hoverinfo="skip", dx=2 if all_heads else 1, dy=2 if all_heads else 1),
                      row=r, col=c)
        # One cell per patch, stretched over the patch's pixels: 49 numbers, not H*W.
        fig.add_trace(go.Heatmap(
            z=values.reshape(side, side), x0=W / side / 2, dx=W / side, y0=H / side / 2, dy=H / side,
            colorscale=SCALE, zmin=0, zmax=1, opacity=alpha, showscale=i == 0, colorbar=dict(title="weight"),
            customdata=patch, hovertemplate=f"{name}<br>patch row %{{customdata[0]}}, column %{{customdata[1]}}"
                                            "<br>weight %{z}<extra></extra>"), row=r, col=c)
        fig.update_xaxes(showticklabels=False, range=[0, W], row=r, col=c)
        fig.update_yaxes(showticklabels=False, range=[H, 0], row=r, col=c)
    title = "Density weight over image patches" + (" (every head and the mean)" if all_heads else f" ({maps[0][0]})")
    return _layout(fig, title, 90 + rows * (WIDTH // cols - 30))


def audio_view(log_mel, frame_times, weights, position_times, heads: Sequence[int] | None = None,
               max_frames: int = 400) -> go.Figure:
    """Log-mel spectrogram above each head's weight over time, on one time axis in seconds.

    log_mel: (mels, frames) with frame_times (frames,) in s; weights: (heads, positions) at position_times (s)."""
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
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.55, 0.45], vertical_spacing=0.06)
    fig.add_trace(go.Heatmap(z=mel, x=t_mel, y=list(range(mel.shape[0])), colorscale="Viridis",
                             colorbar=dict(title="log-mel", y=0.75, len=0.5),
                             hovertemplate="t %{x:.3f} s<br>mel bin %{y}<br>%{z:.2f}<extra></extra>"), row=1, col=1)
    for h in heads:
        fig.add_trace(go.Scatter(x=t_pos, y=w[h], mode="lines", name=f"head {h}",
                                 line=dict(color=LINE_COLOURS[h % len(LINE_COLOURS)], width=2),
                                 hovertemplate=f"head {h}<br>t %{{x}} s<br>weight %{{y}}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(title_text="mel bin", row=1, col=1)
    fig.update_yaxes(title_text="weight", range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(legend=dict(orientation="h", y=-0.15))
    return _layout(fig, "Spectrogram and density weight per head over time", 560)


def attention_comparison(position_labels: Sequence[str], daam_weights, baseline_weights,
                         baseline_name: str = "softmax attention pooling") -> go.Figure:
    """DAAM's per-head weights beside the softmax baseline's attention over the same positions.

    Softmax weights sum to 1 over positions, DAAM gates do not, so each row is scaled to its own maximum."""
    d = _array("daam_weights", daam_weights, 2)
    b = _array("baseline_weights", baseline_weights, 2)
    n = len(position_labels)
    for name, arr in (("daam_weights", d), ("baseline_weights", b)):
        if arr.shape[1] != n:
            raise ValueError(f"{name} has {arr.shape[1]} positions but there are {n} position labels")
    labels = display_tokens(position_labels)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=["DAAM density weight (per head, row max = 1)", f"{baseline_name} (row max = 1)"])
    for row, (arr, kind) in enumerate(((d, "DAAM"), (b, "baseline")), start=1):
        scaled = arr / np.where(arr.max(1, keepdims=True) > 0, arr.max(1, keepdims=True), 1)
        fig.add_trace(go.Heatmap(z=scaled, x=list(range(n)), y=[f"{kind} head {h}" for h in range(len(arr))],
                                 colorscale=SCALE, zmin=0, zmax=1, showscale=row == 1, text=arr.astype(str),
                                 customdata=np.array([labels] * len(arr)), colorbar=dict(title="relative"),
                                 hovertemplate="%{y}<br>%{customdata}<br>weight %{text}<extra></extra>"), row=row, col=1)
        fig.update_yaxes(autorange="reversed", row=row, col=1)
    step = max(1, n // 60)
    fig.update_xaxes(tickvals=list(range(0, n, step)), ticktext=labels[::step], tickangle=-60, row=2, col=1)
    fig.update_xaxes(title_text="position", row=2, col=1)
    return _layout(fig, "DAAM vs softmax attention over the same positions", 200 + 30 * (len(d) + len(b)))
