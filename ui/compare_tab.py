"""The Compare tab: per checkpoint, DAAM beside the mechanisms trained in its place (the table, accuracy against
cost, convergence) and every mechanism on the visitor's own input."""

from __future__ import annotations

import gradio as gr

import viz
from daam.compare import load_comparison

from . import serving
from .inputs import api_input, asked, examples_of, input_widget

COMPARE_COLUMNS = ["mechanism", "accuracy", "± sd", "macro-F1", "params", "ms/item", "drop @20%"]


def _comparison_rows(comparison: dict):
    """The comparison table, its figures shown to fixed decimals (as numbers, so that sorting by a column works)."""
    import pandas as pd

    rows = [[r["name"], r["accuracy_mean"], r["accuracy_sd"], r["macro_f1"], r["parameters"], r["ms_per_item"],
             r["faithfulness"]] for r in comparison["mechanisms"]]
    decimals = {"accuracy": 4, "± sd": 4, "macro-F1": 4, "ms/item": 4, "drop @20%": 3}
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS).style.format(
        {column: f"{{:.{places}f}}" for column, places in decimals.items()})


def _comparison_summary(comparison: dict) -> str:
    """Where DAAM stands, in words: what beats it on accuracy and on the deletion test."""
    rows = comparison["mechanisms"]
    daam = next(r for r in rows if r["name"] == "daam")
    better = [r["name"] for r in rows if r["accuracy_mean"] > daam["accuracy_mean"]]
    f = comparison["faithfulness"]
    sharper = [r["name"] for r in rows if r["faithfulness"] > daam["faithfulness"]]
    accuracy = (f"DAAM loses on accuracy to {', '.join(better)}." if better
                else "No mechanism beats DAAM's test accuracy.")
    deletion = (f"On the deletion test (*drop @20%*), removing the 20% of {f['unit']} a mechanism weights most "
                f"lowers its prediction by the figure in the table (random {f['unit']}: {f['random']:.3f}); "
                + (f"{', '.join(sharper)} point at what matters more than DAAM's raw gate does." if sharper
                   else "DAAM's raw gate points at what matters most."))
    return (f"**{comparison['task']}** — {len(rows)} mechanisms in DAAM's place, same features, split and budget, "
            f"seeds {comparison['seeds']} (mean ± sd on the test split). {accuracy} {deletion} "
            f"Reproduce: `{comparison['command']}`.")


def _compare_verdict(result: dict) -> str:
    rows = result["rows"]
    daam = rows[0]["predicted_label"]
    agree = sum(r["predicted_label"] == daam for r in rows[1:])
    return f"DAAM predicts **{daam}**; {agree} of the other {len(rows) - 1} mechanisms agree."


def compare_tab(models: dict, missing: dict) -> None:
    gr.Markdown("DAAM beside other attention and pooling mechanisms trained in its place on the same frozen "
                "features: accuracy, cost, convergence, and where each one looks on your own input.")
    with gr.Tabs():
        for name, checkpoint in serving.served().items():
            with gr.Tab(checkpoint.title, elem_id=f"compare-{name}"):
                comparison = load_comparison(checkpoint.directory) if name in models else None
                if comparison is None:
                    gr.Markdown(missing.get(name) or f"No comparison for this checkpoint yet: "
                                f"`python -m daam.compare --checkpoint {checkpoint.directory}` makes one.")
                    continue
                gr.Markdown(_comparison_summary(comparison))
                gr.Dataframe(_comparison_rows(comparison), interactive=False,
                             elem_id=f"compare-{name}-table", label="Mechanisms (sort by a column from its header's ⋮ menu)")
                with gr.Row():
                    with gr.Column(min_width=400):
                        gr.Plot(viz.accuracy_vs_cost(comparison["mechanisms"]))
                    with gr.Column(min_width=400):
                        gr.Plot(viz.mechanism_curves(comparison["mechanisms"]))
                _compare_input(name)


def _compare_input(name: str) -> None:
    """The per-input comparison: one input, every mechanism's prediction and weights on one scale."""
    kind = serving.entry(name).input_kind
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            source, _ = input_widget(name, compare=True)
        with gr.Column(scale=1, min_width=200):
            button = gr.Button("Compare on this input", variant="primary", elem_id=f"compare-{name}-run")
    examples = examples_of(name)
    if examples:
        gr.Examples([value for value, _ in examples], source,
                    example_labels=None if kind == "image" else [label for _, label in examples])
    verdict = gr.Markdown(elem_id=f"compare-{name}-verdict")
    plot = gr.Plot(label="Where each mechanism looks", elem_id=f"compare-{name}-weights")

    def show(value) -> dict:
        try:
            result = serving.endpoint("compare", name)(value)
        except gr.Error as error:
            gr.Warning(error.message)
            return {verdict: f"**Nothing compared** — {error.message}", plot: None}
        return {verdict: _compare_verdict(result), plot: viz.mechanism_weights(result, kind=kind)}

    gr.on(asked(button, source), show, source, [verdict, plot], api_visibility="private")
    if kind != "text":
        hidden = gr.Button(visible=False)
        hidden.click(serving.endpoint("compare", name), api_input(name), gr.JSON(visible=False), api_name=f"compare_{name}")
