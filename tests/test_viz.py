"""viz: figure structure, exact values in hover, bad arrays, and no torch/gradio import."""

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

import viz
from daam.explanation import Z_EDGES, count_z

TOKENS = ["[CLS]", "a", "heart", "##warming", "film", "!", "[SEP]"]
rng = np.random.default_rng(0)
WEIGHTS = rng.uniform(0, 1, (4, len(TOKENS)))
GRID = np.linspace(-4, 4, 41)
COMPONENTS = np.stack([np.stack([0.5 * np.exp(-(GRID - m) ** 2 / 2) for m in (-1.5, 1.5)]) for _ in range(4)])
DENSITY = {"grid": GRID, "curve": COMPONENTS.sum(1), "components": COMPONENTS, "mode": "mixture"}


def test_viz_imports_neither_torch_nor_gradio():
    code = "import sys, viz; print(any(m in sys.modules for m in ('torch', 'gradio')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_token_heatmap_holds_the_weights_and_readable_tokens():
    fig = viz.token_heatmap(TOKENS, WEIGHTS)
    (trace,) = fig.data
    assert isinstance(trace, go.Heatmap) and trace.colorscale[0][1] != trace.colorscale[-1][1]
    np.testing.assert_array_equal(np.asarray(trace.z), WEIGHTS)
    assert list(fig.layout.xaxis.ticktext) == ["[CLS]", "a", "heart", "·warming", "film", "!", "[SEP]"]
    assert fig.layout.xaxis.title.text == "token" and fig.layout.yaxis.title.text == "head" and fig.layout.title.text
    # hover shows the exact weight, not a rounded one
    assert "%{text}" in trace.hovertemplate and np.asarray(trace.text)[2, 3] == str(WEIGHTS[2, 3])
    assert (trace.zmin, trace.zmax) == (0, 1)


def test_token_heatmap_per_head_normalisation_spans_zero_to_one():
    trace = viz.token_heatmap(TOKENS, WEIGHTS * 0.1 + 0.3, normalise_per_head=True).data[0]
    z = np.asarray(trace.z)
    np.testing.assert_allclose(z.min(1), 0)
    np.testing.assert_allclose(z.max(1), 1)
    assert np.asarray(trace.text)[2, 3] == str((WEIGHTS * 0.1 + 0.3)[2, 3])  # hover keeps the exact weight


def test_highlighted_text_escapes_and_joins_word_pieces():
    page = viz.highlighted_text_html(["<b>", "heart", "##warming"], WEIGHTS[:, :3], head=1)
    assert "&lt;b&gt;" in page and ">warming</span>" in page and f"weight {WEIGHTS[1, 2]:.6g}" in page
    with pytest.raises(ValueError, match="head"):
        viz.highlighted_text_html(TOKENS, WEIGHTS, head=9)


def test_mixture_curves_draw_gate_components_and_histogram():
    z = np.stack([count_z(rng.normal(size=100)) for _ in range(4)])
    fig = viz.mixture_curves(DENSITY, z_counts=z)
    names = [t.name for t in fig.data]
    assert names.count("mixture gate") == 4 and names.count("this input's z") == 4
    bars = [t for t in fig.data if t.name == "this input's z"]
    np.testing.assert_array_equal(np.asarray(bars[1].y), z[1])  # each head's own counts, one bar per bin
    np.testing.assert_allclose(np.asarray(bars[1].x), (Z_EDGES[:-1] + Z_EDGES[1:]) / 2)
    few = viz.mixture_curves(DENSITY, z_counts=np.eye(4, 40, dtype=int) * 2)  # a count of 2: ticks at whole counts
    assert few.layout[bars[0].yaxis.replace("y", "yaxis")].dtick == 1
    gates = [t for t in fig.data if t.name == "mixture gate"]
    np.testing.assert_allclose(np.asarray(gates[2].y), DENSITY["curve"][2])
    dashed = [t for t in fig.data if t.name == "component 1"]
    assert len(dashed) == 4 and dashed[0].line.dash == "dash"
    assert "z (standardised input)" in [a.title.text for a in fig.select_xaxes()]
    scored = viz.mixture_curves(DENSITY | {"standardises": "score"}, z_counts=z)  # a stage over each head's learned score
    assert "z (standardised score)" in [a.title.text for a in scored.select_xaxes()]


def test_layer_importance_groups_features_and_has_marginals():
    imp = rng.uniform(0, 1, (7, 384))
    names = ["embeddings"] + [f"layer {i}" for i in range(1, 7)]
    fig = viz.layer_importance(imp, names, group=8)
    heat = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert np.asarray(heat.z).shape == (7, 48)
    np.testing.assert_allclose(np.asarray(heat.z)[3, 5], imp[3, 40:48].mean())
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 2
    np.testing.assert_allclose(np.asarray(next(b for b in bars if b.orientation == "h").x), imp.mean(1))


def test_prediction_bars():
    fig = viz.prediction_bars(["rotten", "fresh"], [0.2, 0.8])
    assert list(fig.data[0].y) == ["rotten", "fresh"] and list(fig.data[0].x) == [0.2, 0.8]
    letters = [chr(65 + i) for i in range(26)]
    many = viz.prediction_bars(letters, np.arange(26) / 325)  # of 26 classes, the 10 most likely, the top one last
    assert list(many.data[0].y) == letters[-10:] and "10 most likely of 26" in many.layout.title.text


@pytest.mark.parametrize("call,field", [
    (lambda: viz.token_heatmap(TOKENS, np.full((2, 7), np.nan)), "position_weights contains NaN"),
    (lambda: viz.token_heatmap(TOKENS, np.zeros((2, 0))), "position_weights is empty"),
    (lambda: viz.token_heatmap(TOKENS, np.zeros((2, 5))), "5 positions but there are 7 tokens"),
    (lambda: viz.token_heatmap(TOKENS, np.zeros(7)), "position_weights must have 2 dimensions"),
    (lambda: viz.prediction_bars(["a"], [0.5, 0.5]), "labels \\(1\\) and probabilities \\(2\\)"),
    (lambda: viz.layer_importance(np.zeros((7, 8)), ["x"]), "7 layers but 1 layer names"),
    (lambda: viz.mixture_curves(DENSITY | {"curve": DENSITY["curve"][:, :5]}), "density.positions"),
    (lambda: viz.mixture_curves(DENSITY, z_counts=np.zeros((1, 40))), "z_counts has shape \\(1, 40\\)"),
])
def test_bad_arrays_raise_value_error_naming_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_figure_json_stays_within_budget_for_the_largest_inputs():
    """<= 300 KB each for 512 tokens, 49 patches of a noisy (incompressible) image, 10 s of audio."""
    tokens = [f"tok{i}" for i in range(512)]
    w512 = rng.uniform(0, 1, (4, 512))
    figures = [
        viz.token_heatmap(tokens, w512),
        viz.mechanism_weights(comparison(tokens, 7)),
        viz.mixture_curves({**DENSITY, "grid": np.linspace(-4, 4, 161),
                            "curve": rng.uniform(0, 1, (4, 161)), "components": rng.uniform(0, 1, (4, 3, 161))},
                           z_counts=rng.integers(0, 10 ** 6, (4, 40))),
        viz.layer_importance(rng.uniform(0, 1, (7, 384)), [f"l{i}" for i in range(7)]),
        viz.image_overlay(rng.integers(0, 256, (224, 224), dtype=np.uint8), rng.uniform(0, 1, (4, 49)), all_heads=True),
        viz.audio_view(rng.normal(size=(64, 1001)), np.arange(1001) * 0.01, rng.uniform(0, 1, (4, 250)),
                       np.arange(250) * 0.04),
    ]
    sizes = [len(f.to_json()) for f in figures]
    assert max(sizes) <= 300_000, sizes
    assert len(viz.highlighted_text_html(tokens, w512)) <= 300_000


def test_image_overlay_places_one_cell_per_patch():
    fig = viz.image_overlay(np.zeros((224, 224, 3), np.uint8), np.arange(4 * 49).reshape(4, 49) / 196, head=2)
    heat = next(t for t in fig.data if isinstance(t, go.Heatmap))
    np.testing.assert_allclose(np.asarray(heat.z), (np.arange(4 * 49).reshape(4, 49) / 196)[2].reshape(7, 7))
    assert heat.dx == 32 and heat.x0 == 16 and "patch row" in heat.hovertemplate
    with pytest.raises(ValueError, match="not a square patch grid"):
        viz.image_overlay(np.zeros((8, 8), np.uint8), np.zeros((1, 5)))


def test_audio_view_shares_a_time_axis_in_seconds():
    fig = viz.audio_view(np.zeros((64, 100)), np.arange(100) * 0.01, rng.uniform(0, 1, (3, 25)),
                         np.arange(25) * 0.04, heads=[0, 2])
    lines = [t for t in fig.data if isinstance(t, go.Scatter)]
    assert [t.name for t in lines] == ["head 0", "head 2"]
    assert fig.layout.xaxis2.title.text == "time (s)" and fig.layout.xaxis.matches == "x2"


def test_relevance_heatmap_is_signed_diverging_and_sums_the_heads():
    relevance = rng.normal(size=(4, len(TOKENS)))
    fig = viz.relevance_heatmap(TOKENS, relevance)
    (trace,) = fig.data
    np.testing.assert_allclose(np.asarray(trace.z)[0], relevance.sum(0))  # "all heads" row first
    np.testing.assert_allclose(np.asarray(trace.z)[1:], relevance)
    bound = np.abs(np.asarray(trace.z)).max()
    assert trace.zmid == 0 and (trace.zmin, trace.zmax) == (-bound, bound)
    assert trace.colorscale != viz.token_heatmap(TOKENS, WEIGHTS).data[0].colorscale  # diverging, not cividis
    assert np.asarray(trace.text)[2, 3] == str(relevance[1, 3])  # exact value on hover


def test_highlighted_relevance_colours_by_sign():
    relevance = np.zeros((2, 3))
    relevance[0] = [1.0, 0.0, -1.0]
    page = viz.highlighted_text_html(["good", "film", "dull"], relevance, signed=True)
    colours = [part.split("background:")[1].split(";")[0] for part in page.split("<span")[1:]]
    assert colours[0] != colours[2] and colours[1] not in colours[::2]
    assert "relevance 1" in page and "relevance -1" in page and "purple supports" in page


def test_long_sequences_wrap_into_lines_with_every_token_written_in_its_cell():
    tokens = [f"w{i}" for i in range(100)]
    relevance = rng.normal(size=(4, 100))
    fig = viz.relevance_heatmap(tokens, relevance)
    (trace,) = fig.data
    z, text = np.asarray(trace.z, dtype=float), np.asarray(trace.text)
    lines = -(-100 // viz.figures.WRAP)
    assert z.shape == (lines, viz.figures.WRAP) and trace.texttemplate == "%{text}"
    np.testing.assert_allclose(z.ravel()[:100], relevance.sum(0))  # the sum over heads, in reading order
    assert np.isnan(z.ravel()[100:]).all() and list(text.ravel()[:100]) == tokens
    hover = np.asarray(viz.relevance_heatmap(tokens, relevance, normalise_per_head=True).data[0].customdata)
    assert hover.reshape(-1, 2)[7, 1] == str(relevance.sum(0)[7])  # exact, unnormalised value on hover
    assert fig.layout.height >= 24 * lines  # the figure grows with the text instead of squeezing it
    gates = viz.token_heatmap(tokens, WEIGHTS[:, :1].repeat(100, 1), head=3)
    np.testing.assert_allclose(np.asarray(gates.data[0].z, dtype=float).ravel()[:100], WEIGHTS[3, 0])


def test_choosing_a_head_redraws_every_view_for_that_head():
    relevance = rng.normal(size=(4, len(TOKENS)))
    heat = viz.relevance_heatmap(TOKENS, relevance, head=1).data[0]
    assert list(heat.y) == ["head 1"]
    np.testing.assert_allclose(np.asarray(heat.z), relevance[1:2])
    assert list(viz.token_heatmap(TOKENS, WEIGHTS, head=2).data[0].y) == ["head 2"]
    one = viz.mixture_curves(DENSITY, z_counts=rng.integers(0, 50, (4, 40)), head=3)
    gates = [t for t in one.data if t.name == "mixture gate"]
    assert len(gates) == 1 and "head 3" in one.layout.title.text
    np.testing.assert_allclose(np.asarray(gates[0].y), DENSITY["curve"][3])
    normalised = np.asarray(viz.relevance_heatmap(TOKENS, relevance, normalise_per_head=True).data[0].z)
    np.testing.assert_allclose(np.abs(normalised).max(1), 1)
    with pytest.raises(ValueError, match="head"):
        viz.relevance_heatmap(TOKENS, relevance, head=7)


def test_figures_take_their_container_width_and_every_scale_is_colour_blind_safe():
    figures = [viz.token_heatmap(TOKENS, WEIGHTS), viz.mixture_curves(DENSITY),
               viz.audio_view(np.zeros((8, 10)), np.arange(10) * 0.1, WEIGHTS[:, :5], np.arange(5) * 0.2)]
    assert all(f.layout.width is None and f.layout.autosize for f in figures)
    assert figures[-1].data[0].colorscale == figures[0].data[0].colorscale  # the spectrogram is cividis too


def test_image_relevance_overlay_is_diverging_around_zero():
    relevance = np.linspace(-2, 1, 49)[None]
    fig = viz.image_overlay(np.zeros((224, 224), np.uint8), relevance, signed=True)
    heat = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert (heat.zmin, heat.zmax) == (-2, 2) and "relevance" in heat.hovertemplate
    np.testing.assert_allclose(np.asarray(heat.z).ravel(), relevance[0])


def comparison(position_labels, mechanisms: int) -> dict:
    """A compare_input-shaped dict: each mechanism's weights a distribution over the positions."""
    n = len(position_labels)
    return {"position_labels": list(position_labels), "labels": ["rotten", "fresh"],
            "rows": [{"name": f"m{i}", "title": f"mechanism {i}", "predicted_label": "fresh",
                      "probabilities": [0.3, 0.7], "position_weights": list(rng.dirichlet(np.ones(n)))}
                     for i in range(mechanisms)]}


def test_mechanism_weights_share_one_scale_and_name_each_prediction():
    data = comparison(TOKENS, 3)
    fig = viz.mechanism_weights(data)
    heat = fig.data[0]
    z = np.asarray(heat.z)
    assert z.shape == (3, len(TOKENS)) and heat.zmin == 0 and heat.zmax == pytest.approx(z.max())
    np.testing.assert_allclose(z[1], data["rows"][1]["position_weights"])
    assert list(heat.y) == [f"m{i}: fresh (70%)" for i in range(3)]
    grid = viz.mechanism_weights(comparison([f"cell {i}" for i in range(49)], 7), kind="image")
    assert len(grid.data) == 7 and all(np.asarray(t.z).shape == (7, 7) for t in grid.data)
    assert len({t.zmax for t in grid.data}) == 1  # one shared scale
    data["rows"][2]["position_weights"] = [0.5, 0.5]
    with pytest.raises(ValueError, match="m2 has 2 weights for 7 positions"):
        viz.mechanism_weights(data)


def test_convergence_and_cost_figures_hold_each_mechanisms_numbers():
    rows = [{"name": "daam", "curve": [0.7, 0.75, 0.77], "accuracy_mean": 0.78, "accuracy_sd": 0.01,
             "ms_per_item": 0.2, "parameters": 9000, "faithfulness": 0.03},
            {"name": "mean", "curve": [0.72, 0.76, 0.76], "accuracy_mean": 0.77, "accuracy_sd": 0.004,
             "ms_per_item": 0.05, "parameters": 800, "faithfulness": 0.05}]
    curves = viz.mechanism_curves(rows)
    assert [t.name for t in curves.data] == ["daam", "mean"] and list(curves.data[1].y) == [0.72, 0.76, 0.76]
    cost = viz.accuracy_vs_cost(rows)
    assert cost.layout.xaxis.type == "log" and cost.data[0].y[0] == 0.78 and cost.data[1].error_y.array[0] == 0.004
    # Within less than a decade (0.1-0.5 ms, as the image heads) there are still four ticks, labelled in full.
    labelled = dict(zip(cost.layout.xaxis.tickvals, cost.layout.xaxis.ticktext))
    assert [text for value, text in labelled.items() if 0.099 < value < 0.51] == ["0.1", "0.2", "0.3", "0.5"]
    assert 10 ** cost.layout.xaxis.range[0] <= 0.05 and 10 ** cost.layout.xaxis.range[1] >= 0.2  # a tick each side
