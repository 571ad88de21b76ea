"""A modality's tab: its input, Explain, examples, every figure of the Explanation, "Can I trust this?" (the
deletion test on the current input) and the export of the Explanation JSON with its figures."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import gradio as gr

import viz
from daam.explanation import Explanation
from daam.faithfulness import UNCHANGED_RHO
from daam.faithfulness import check as deletion_check
from daam.modalities import MODALITIES, no_answer
from daam.ood import QUANTILE
from viz.gallery import figures_html, html_page

from . import serving
from .inputs import api_input, asked, input_widget

MEAN_OF_HEADS = "mean of heads"
EXPORTS = Path(tempfile.mkdtemp(prefix="daam-lens-exports-"))  # one folder per process
KEEP_EXPORTS = 16


def head_choices(heads: int) -> list[str]:
    return [MEAN_OF_HEADS] + [f"head {h}" for h in range(heads)]


def chosen_head(choice: str | None) -> int | None:
    """The head a dropdown choice names; None for the mean of heads."""
    return None if choice in (None, MEAN_OF_HEADS) else int(choice.split()[-1])


def _ms(value: float) -> str:
    return "under 1 ms" if value < 1 else f"{value:.0f} ms"


def summary(e: Explanation) -> str:
    note = f" — {e.truncation_note}." if e.truncation_note else ""
    confidence = max(e.probabilities)
    verdict = f"**{e.predicted_label}** ({confidence:.1%})"
    entry, reason = MODALITIES[e.modality], no_answer(e)
    if reason == "not speech":  # a tone, noise, music: say so rather than name a letter
        verdict = (f"**No {entry.answer} found** — this does not sound like speech (speech probability "
                   f"{e.extras.speech_probability:.1%}; the label it would otherwise give: {e.predicted_label}, {confidence:.1%})")
    elif reason == "low confidence":
        verdict = (f"**No clear {entry.answer} found** — the best guess, {e.predicted_label}, "
                   f"has only {confidence:.1%} (answers below {entry.min_confidence:.0%} are not trusted)")
    return (f"{ood_banner(e)}{verdict}{note}  \nencoder {_ms(e.timings['encoder_ms'])}, DAAM {_ms(e.timings['daam_ms'])}")


def ood_banner(e: Explanation) -> str:
    """Above the prediction, when the input lies beyond the checkpoint's out-of-distribution threshold (daam.ood);
    a clip with no speech already says so, and keeps that answer alone."""
    if not e.out_of_distribution or no_answer(e) == "not speech":
        return ""
    return (f"⚠️ **This input is unlike the training data** (farther than {QUANTILE:.0%} of its held-out items): the "
            "prediction and the explanation describe how the model handles something it was not trained for.\n\n")


def export(explanation: dict | None):
    """The Explanation JSON and every figure as one offline HTML page, as downloadable files."""
    if explanation is None:
        raise gr.Error("Explain something first; then its JSON and figures can be downloaded.")
    # Gradio copies returned files into its own cache, so older exports can go: the folder stays small.
    for old in sorted(EXPORTS.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEEP_EXPORTS]:
        shutil.rmtree(old, ignore_errors=True)
    out = Path(tempfile.mkdtemp(dir=EXPORTS))
    (out / "explanation.json").write_text(json.dumps(explanation))
    body = figures_html(viz.explanation_figures(explanation), id_prefix="export")
    (out / "figures.html").write_text(html_page("DAAM Lens explanation", body))
    return [str(out / "explanation.json"), str(out / "figures.html")]


def _result_views(name: str) -> dict[str, gr.components.Component]:
    """What every modality tab shows, keyed like viz.explanation_figures' figures."""
    entry = serving.entry(name)
    tokens = entry.input_kind == "text"
    relevance = bool(entry.case)  # shown as the main view where the deletion test checks it
    views = {"summary": gr.Markdown(elem_id=f"{name}-summary"), "prediction": gr.Plot(label="Prediction")}
    if tokens:
        views["highlighted_text"] = gr.HTML(label="Highlighted text")
    views["positions"] = gr.Plot(label=f"Relevance over {entry.positions}" if relevance
                                 else f"Density weight per head over {entry.positions}", elem_id=f"{name}-positions")
    if relevance:
        pooled_by_gates = serving.model_for(name).config.pooling == "gate"
        with gr.Accordion("Raw gates: each head's pooling weight on each position" if pooled_by_gates else
                          "Raw gates: what each head lets through (not what drove the prediction)", open=False):
            views["gates"] = gr.Plot(label=f"Density weight per head over {entry.positions}", elem_id=f"{name}-gates")
    with gr.Row():  # side by side on a wide page; one above the other when each would be under 560 px
        for stage in ("positions", "layers"):
            with gr.Column(min_width=560):
                views[f"density_{stage}"] = gr.Plot(label=f"Densities: {stage} stage", elem_id=f"{name}-density-{stage}")
    views["layer_importance"] = gr.Plot(label="Layer importance")
    return views


def _render(views: dict, e: Explanation, head_choice: str | None, normalise: bool) -> dict:
    figures = viz.explanation_figures(e, head=chosen_head(head_choice), normalise_per_head=normalise)
    return {component: summary(e) if key == "summary" else figures[key] for key, component in views.items()}


def modality_tab(name: str, examples: list[tuple]) -> tuple[gr.components.Component, tuple]:
    """A modality's tab: its input, Explain, examples, the figures, and export. Returns the input widget and the
    event (fn, inputs, outputs) that explains what it holds, for another tab to open an input here."""
    kind = serving.entry(name).input_kind
    explanation = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            source, seen = input_widget(name)
        with gr.Column(scale=1, min_width=200):
            head = gr.Dropdown(head_choices(0), value=MEAN_OF_HEADS, label="Head", elem_id="head" if kind == "text"
                               else f"{name}-head", info="every view below shows this head, or all of them")
            normalise = gr.Checkbox(label="Normalise each head's row to its own range (heatmaps)",
                                    visible=kind == "text")
            button = gr.Button("Explain", variant="primary", elem_id=f"explain-{name}")
    if examples:
        # Pictures show themselves as thumbnails; sentences are their own labels; clips need words.
        gr.Examples([value for value, _ in examples], source,
                    example_labels=None if kind == "image" else [label for _, label in examples])
    views = _result_views(name)

    def cleared(message: str) -> dict:
        """After a bad input: its message where the result was, and no result left that looks current."""
        out = {explanation: None, head: gr.update(choices=head_choices(0), value=MEAN_OF_HEADS)}
        out |= {component: None for component in views.values()}
        out[views["summary"]] = f"**Nothing explained** — {message}"
        if seen is not None:
            out[seen] = None
        if kind != "text":  # an unreadable upload is of no further use; typed text is never thrown away
            out[source] = None
        return out

    @serving.user_errors
    def explain(value, head_choice: str, normalise_each: bool, progress: gr.Progress) -> dict:
        progress(0.1, desc="explaining")
        e = serving.explain(name, value)
        progress(0.8, desc="drawing")
        choice = head_choice if head_choice in head_choices(e.heads) else MEAN_OF_HEADS
        out = {explanation: e.to_dict(), **_render(views, e, choice, normalise_each),
               head: gr.update(choices=head_choices(e.heads), value=choice)}
        if seen is not None:
            out[seen] = e.extras.image
        return out

    def show(value, head_choice: str, normalise_each: bool, progress=gr.Progress()) -> dict:
        try:
            return explain(value, head_choice, normalise_each, progress)
        except gr.Error as error:
            gr.Warning(error.message)
            return cleared(error.message)

    @serving.user_errors
    def rerender(saved: dict | None, head_choice: str, normalise_each: bool) -> dict:
        if saved is None:  # nothing to redraw yet: the controls simply wait for a result
            return {component: gr.skip() for component in views.values()}
        return _render(views, Explanation.from_dict(saved), head_choice, normalise_each)

    outputs = [explanation, head, source, *views.values()] + ([seen] if seen is not None else [])
    explain_event = (show, [source, head, normalise], outputs)
    gr.on(asked(button, source), *explain_event, api_visibility="private")
    gr.on([head.change, normalise.change], rerender, [explanation, head, normalise], list(views.values()),
          api_visibility="private", trigger_mode="always_last")
    if serving.entry(name).case:
        _trust_panel(name, source)
    with gr.Row():
        export_button = gr.Button("Export JSON and figures")
        files = gr.File(label="Downloads", file_count="multiple", visible=False,  # shown once there is something
                        elem_id=f"{name}-downloads")
    export_button.click(serving.user_errors(lambda saved: gr.update(value=export(saved), visible=True)), explanation, files,
                        api_visibility="private")
    if kind != "text":
        hidden = gr.Button(visible=False)
        hidden.click(serving.endpoint("explain", name), api_input(name), gr.JSON(visible=False), api_name=f"explain_{name}")
    return source, explain_event


def _trust_verdict(result: dict, randomisation: str) -> str:
    """The deletion test at 20% of the units and the field's measures on this input, in words, and what the
    randomisation check found on held-out data."""
    at = result["fractions"].index(0.2)
    ours, chance = result["relevance"][at], result["random"][at]
    unit = result["unit"]
    said = (f"Removing the 20% most relevant {unit} lowers the probability of **{result['predicted_label']}** by "
            f"{ours:.3f}; removing random {unit} lowers it by {chance:.3f}")
    said += (": for this input, the explanation points at what the prediction depends on." if ours > chance + 0.05
             else ": **no better than random** — for this input, do not read much into the relevance.")
    trust, chance = result["trust"], result["random_trust"]
    said += (f"  \nOn this input, comprehensiveness {trust['comprehensiveness']:.3f} (random {chance['comprehensiveness']:.3f}; "
             f"higher is more faithful), sufficiency {trust['sufficiency']:.3f} (random {chance['sufficiency']:.3f}; "
             f"lower is more faithful): ERASER's AOPC over removing / keeping the top 1, 5, 10, 20 and 50% of {unit}.")
    return said + (f"  \n{randomisation}" if randomisation else "")


def randomisation_note(name: str) -> str:
    """What the model-randomisation check found for this checkpoint on held-out data (its metrics.json), flagging
    each method whose ranking did not change; "" where it has not been run."""
    return _randomisation_note(serving.served()[name].directory / "metrics.json")


@functools.cache  # metrics.json does not change while the app serves: read once, not on every filter or trust run
def _randomisation_note(path: Path) -> str:
    rho = (json.loads(path.read_text()).get("faithfulness") or {}).get("randomisation") if path.is_file() else None
    if not rho:
        return ""
    failing = [m for m, parts in rho.items() if max(parts.values()) > UNCHANGED_RHO]
    relevance = rho.get("relevance")
    said = ("Model randomisation (Adebayo et al. 2018, on held-out items): with the densities / the classifier head "
            "redrawn at random, relevance's ranking keeps Spearman ρ "
            f"{relevance['densities']:.2f} / {relevance['head']:.2f} with the trained model's" if relevance else
            "Model randomisation (Adebayo et al. 2018)")
    if failing:
        said += f"; **does not change enough (ρ > {UNCHANGED_RHO}): {', '.join(failing)}**, so do not read those as explanations"
    return said + "."


def _trust_panel(name: str, source) -> None:
    """"Can I trust this?": the deletion test on the current input, on demand."""
    what = "sentence" if serving.entry(name).input_kind == "text" else serving.entry(name).input_kind
    with gr.Accordion(f"Can I trust this? Run the deletion test on this {what}", open=False):
        button = gr.Button("Run the deletion test", elem_id=f"{name}-trust")
        verdict = gr.Markdown(elem_id=f"{name}-trust-verdict")
        plot = gr.Plot(label="Deletion test")

    @serving.user_errors
    def run(value, progress=gr.Progress()) -> dict:
        progress(0.2, desc="removing parts of the input and re-running the model")
        result = deletion_check(serving.model_for(name), serving.check_input(serving.entry(name).input_kind, value))
        return {verdict: _trust_verdict(result, randomisation_note(name)),
                plot: viz.deletion_check(result["fractions"], result["relevance"], result["random"], unit=result["unit"])}

    button.click(run, source, [verdict, plot], api_visibility="private")
