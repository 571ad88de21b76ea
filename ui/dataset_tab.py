"""The Dataset tab: a checkpoint's held-out test items as one table (daam.dataset_view over what
`python -m daam.explain_dataset` wrote into the checkpoint's dataset/ folder), filtered and paged, with what holds
across the rows shown: confusion matrix, accuracy and faithfulness per class, what each head favours, and each
head's learned density over the z-values it saw. Selecting a row opens the item in its checkpoint's tab.

Nothing is recomputed: the Parquet is read once per checkpoint; filters are masks over it."""

from __future__ import annotations

import base64
import functools
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pandas as pd

import viz
from daam.dataset_view import PAGE_ROWS, SORTS, DatasetView, Filters
from daam.explanation import PNG_PREFIX
from daam.faithfulness import removal
from viz.dataset import class_relevance_maps, confusion_colours, favoured_tokens, relevance_over_positions

from . import serving
from .explain_tab import MEAN_OF_HEADS, chosen_head, head_choices, randomisation_note

ALL = "all"
OPENED = Path(tempfile.mkdtemp(prefix="daam-lens-dataset-"))  # rows opened in their tab, as files the widgets take
PNG_MAGIC = b"\x89PNG"
# The input last: the short columns stay in view on a narrow page, and the text takes what width is left.
SHOWN_COLUMNS = ["id", "label", "predicted", "confidence", "correct", "comprehensiveness", "sufficiency", "input"]


@dataclass
class Opener:
    """How the Dataset tab opens a row in a checkpoint's own tab: that tab's id and input widget, and the event
    (fn, inputs, outputs) that explains what the widget holds."""

    tab_id: str
    source: gr.components.Component
    explain: tuple[Callable, list, list]


def view(name: str) -> DatasetView:
    """The served checkpoint's explained test set, read once."""
    return _read(serving.served()[name].directory / "dataset", tuple(serving.model_for(name).config.labels))


@functools.cache  # by folder, not by name: checkpoints served later under the same name keep their own rows
def _read(directory: Path, labels: tuple[str, ...]) -> DatasetView:
    return DatasetView.read(directory, list(labels))


def has_dataset(name: str) -> bool:
    return any((serving.served()[name].directory / "dataset").glob("part-*.parquet"))


def _filters(errors_only: bool, label: str | None, predicted: str | None, low: float, high: float,
             search: str) -> Filters:
    return Filters(bool(errors_only), None if label in (None, ALL) else label,
                   None if predicted in (None, ALL) else predicted, float(low), float(high), search or "")


def _shown_input(v: DatasetView, row: pd.Series) -> str:
    """The table's input cell: the text, a thumbnail of a picture, or the clip's name."""
    media = v.frame.at[row.name, "media"]
    if media is not None and bytes(media).startswith(PNG_MAGIC):
        return f"![item {row['id']}]({PNG_PREFIX}{base64.b64encode(media).decode()})"
    text = str(row["input"])
    return text if len(text) <= 160 else text[:157] + "…"


def page_table(v: DatasetView, rows: np.ndarray, number: int, sort: str, descending: bool) -> pd.DataFrame:
    page = v.page(rows, number, sort, descending)
    shown = page.assign(input=[_shown_input(v, r) for _, r in page.iterrows()]).round(3)
    return shown.rename(columns={"predicted_label": "predicted"})[SHOWN_COLUMNS]


def _confusion(v: DatasetView, rows: np.ndarray):
    counts = v.confusion(rows)
    frame = pd.DataFrame(counts, columns=list(v.labels))
    frame.insert(0, "true \\ predicted", v.labels)
    colours = confusion_colours(counts)
    return frame.style.apply(lambda _: np.column_stack([np.full(len(counts), ""), colours]), axis=None)


def _summary(v: DatasetView, rows: np.ndarray, name: str) -> str:
    if not len(rows):
        return "**No row matches these filters.**"
    correct = v.frame["correct"].to_numpy()[rows]
    said = f"**{len(rows):,} of {len(v):,} held-out items** — accuracy {correct.mean():.1%}"
    if v.measured:
        trust = v.trust(rows)
        (c, c_sd), (s, s_sd) = trust["comprehensiveness"], trust["sufficiency"]
        said += (f"; relevance's comprehensiveness {c:.3f} ± {c_sd:.3f} (higher is more faithful), sufficiency "
                 f"{s:.3f} ± {s_sd:.3f} (lower is more faithful): ERASER's AOPC over the top 1, 5, 10, 20 and 50%, "
                 f"{removal(serving.served()[name].modality)}, mean ± sd over these rows")
    note = randomisation_note(name)
    return said + "." + (f"  \n{note}" if note else "")


def _what_heads_favour(v: DatasetView, rows: np.ndarray, name: str, head_choice: str | None):
    """Text: the favoured tokens; pictures: the mean relevance map per class; else mean relevance over positions."""
    kind = serving.entry(name).input_kind
    if not len(rows):
        return None
    if kind == "text":
        return favoured_tokens(v.favoured_tokens(rows, chosen_head(head_choice)), head_choice or MEAN_OF_HEADS)
    mean = v.mean_relevance(rows)
    present = np.bincount(v.label_index[rows], minlength=len(v.labels)) > 0
    if kind == "image":
        return class_relevance_maps(mean, v.labels, present)
    longest = v.frame["position_labels"].iloc[int(np.bincount(v.row_of_position).argmax())]
    return relevance_over_positions(mean, v.labels, present, longest, unit="position")


def _density(v: DatasetView, rows: np.ndarray, name: str, head_choice: str | None):
    if not len(rows):
        return None
    stage = serving.model_for(name).densities()["positions"]
    return viz.mixture_curves(stage, z_counts=v.z_histogram(rows), head=chosen_head(head_choice),
                              z_name="z of these rows", title="Learned density per head over the z-values of these rows")


def _selected(name: str, errors_only, label, predicted, low, high, search) -> tuple[DatasetView, np.ndarray]:
    v = view(name)
    return v, v.rows(_filters(errors_only, label, predicted, low, high, search))


def _page(v: DatasetView, rows: np.ndarray, sort: str, descending: bool, number: int = 0) -> tuple:
    """The table's page (clamped to the pages there are), its number and "page n of m"."""
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    number = min(max(0, int(number or 0)), pages - 1)
    return page_table(v, rows, number, sort, descending), number, f"page {number + 1} of {pages:,}"


def _head_figures(v: DatasetView, rows: np.ndarray, name: str, head_choice: str | None) -> tuple:
    return _what_heads_favour(v, rows, name, head_choice), _density(v, rows, name, head_choice)


def refresh(name: str, errors_only, label, predicted, low, high, search, sort, descending, head_choice) -> tuple:
    """Everything the filters change: summary, page, page count, confusion matrix, per-class table, figures."""
    v, rows = _selected(name, errors_only, label, predicted, low, high, search)
    return (_summary(v, rows, name), *_page(v, rows, sort, descending), _confusion(v, rows),
            v.per_class(rows).round(3), *_head_figures(v, rows, name, head_choice))


def turn_page(name: str, number: int, errors_only, label, predicted, low, high, search, sort, descending) -> tuple:
    """Another page, or another order: the table alone."""
    return _page(*_selected(name, errors_only, label, predicted, low, high, search), sort, descending, number)


def redraw_heads(name: str, errors_only, label, predicted, low, high, search, head_choice) -> tuple:
    """Another head: its two figures alone."""
    return _head_figures(*_selected(name, errors_only, label, predicted, low, high, search), name, head_choice)


def opened_value(name: str, item_id: int):
    """What the checkpoint's input widget takes for a row: its text, its file's path, or its media as a file."""
    v = view(name)
    row = v.frame.loc[v.frame["id"] == item_id].iloc[0]
    if row["media"] is None:
        return row["input"]
    media = bytes(row["media"])
    suffix = ".png" if media.startswith(PNG_MAGIC) else ".flac"
    path = OPENED / f"{name}-{item_id}-{hashlib.sha1(media).hexdigest()[:8]}{suffix}"
    if not path.exists():
        path.write_bytes(media)
    return str(path)


def dataset_rows(name: str, errors_only: bool = False, label: str = "", predicted: str = "", min_confidence: float = 0.0,
                 max_confidence: float = 1.0, search: str = "", sort: str = "id", descending: bool = False,
                 page: int = 0) -> dict:
    """A page of the checkpoint's explained test items that pass the filters, with how many there are."""
    if sort not in SORTS:
        raise serving.InputError(f"sort must be one of {sorted(SORTS)}, not {sort!r}")
    v = view(name)
    for given in (label, predicted):
        if given and given not in v.labels:
            raise serving.InputError(f"{given!r} is not a label of this checkpoint: {v.labels}")
    rows = v.rows(_filters(errors_only, label or None, predicted or None, min_confidence, max_confidence, search))
    page_rows = v.page(rows, int(page), sort, bool(descending))
    out = page_rows.assign(position_labels=v.frame.loc[page_rows.index, "position_labels"].map(list),
                           relevance=v.frame.loc[page_rows.index, "relevance"].map(lambda r: [float(x) for x in r]))
    return {"total": int(len(rows)), "page": int(page), "page_rows": PAGE_ROWS,
            "rows": [{k: (v_.item() if hasattr(v_, "item") else v_) for k, v_ in r.items()}
                     for r in out.to_dict(orient="records")]}


def dataset_endpoint(name: str) -> Callable:
    """The named endpoint /dataset_<name>: dataset_rows of that checkpoint, for gradio_client."""
    def answer(errors_only: bool = False, label: str = "", predicted: str = "", min_confidence: float = 0.0,
               max_confidence: float = 1.0, search: str = "", sort: str = "id", descending: bool = False,
               page: int = 0) -> dict:
        return dataset_rows(name, errors_only, label, predicted, min_confidence, max_confidence, search, sort,
                            descending, page)

    answer.__name__ = answer.__qualname__ = f"dataset_{name}"
    answer.__doc__ = (f"A page ({PAGE_ROWS} rows) of the {name} checkpoint's explained test items that pass the "
                      f"filters (label and predicted: a label or ''; sort: one of {sorted(SORTS)}), with the total.")
    return serving.user_errors(answer)


def dataset_tab(openers: dict[str, Opener], tabs: gr.Tabs) -> None:
    """A sub-tab per served checkpoint that has an explained dataset (else how to make one)."""
    with gr.Tabs():
        for name, checkpoint in serving.served().items():
            with gr.Tab(checkpoint.title, elem_id=f"dataset-{name}"):
                if name not in openers:
                    gr.Markdown(f"The {checkpoint.title} checkpoint is not loaded.")
                elif not has_dataset(name):
                    gr.Markdown(f"No explained test set for this checkpoint yet: `python -m daam.explain_dataset "
                                f"--checkpoint {checkpoint.directory} --split test` writes one into its dataset/ "
                                "folder, and the app shows it here when started again.")
                else:
                    _checkpoint_view(name, openers[name], tabs)


def _checkpoint_view(name: str, opener: Opener, tabs: gr.Tabs) -> None:
    v = view(name)
    labels = [ALL] + v.labels
    first = dict(errors_only=False, label=ALL, predicted=ALL, low=0.0, high=1.0, search="", sort="id",
                 descending=False, head=MEAN_OF_HEADS)
    start = dict(zip(["summary", "table", "number", "where", "confusion", "per_class", "favoured", "density"],
                     refresh(name, *first.values())))
    summary = gr.Markdown(start["summary"], elem_id=f"dataset-{name}-summary")
    with gr.Row():
        errors_only = gr.Checkbox(first["errors_only"], label="Errors only", min_width=120)
        label = gr.Dropdown(labels, value=ALL, label="True label", min_width=140)
        predicted = gr.Dropdown(labels, value=ALL, label="Predicted label", min_width=140)
        search = gr.Textbox(label="Search the inputs (Enter)", placeholder="a word, or a file's name", min_width=180)
    with gr.Row():
        low = gr.Slider(0, 1, value=0, step=0.01, label="Confidence from", min_width=160)
        high = gr.Slider(0, 1, value=1, step=0.01, label="Confidence to", min_width=160)
        sort = gr.Dropdown(list(SORTS), value="id", label="Sort by", min_width=140)
        descending = gr.Checkbox(label="Highest first", min_width=120)
    table = gr.Dataframe(start["table"], datatype=["number", "str", "str", "number", "bool", "number", "number",
                                                   "markdown"],
                         column_widths=["6%", "9%", "9%", "10%", "6%", "12%", "11%", "37%"],
                         interactive=False, wrap=True, elem_id=f"dataset-{name}-table",
                         label="Held-out items: select a row to open it in its tab")
    with gr.Row():
        previous = gr.Button("◀ Previous", size="sm", min_width=100)
        where = gr.Markdown(start["where"], elem_id=f"dataset-{name}-page")
        following = gr.Button("Next ▶", size="sm", min_width=100)
    number = gr.State(0)
    confusion = gr.Dataframe(start["confusion"], interactive=False, elem_id=f"dataset-{name}-confusion",
                             label="Confusion matrix: true label down, predicted across (select a cell to filter to it)")
    per_class = gr.Dataframe(start["per_class"], interactive=False,
                             label="Accuracy and faithfulness per true label (mean and sd)")
    head = gr.Dropdown(head_choices(v.heads), value=MEAN_OF_HEADS, label="Head",
                       info="the favoured tokens' gate and the density below show this head, or all of them")
    favoured = gr.Plot(start["favoured"], label="What holds across these rows", elem_id=f"dataset-{name}-favoured")
    density = gr.Plot(start["density"], label="Learned densities over the z-values of these rows",
                      elem_id=f"dataset-{name}-density")

    filters = [errors_only, label, predicted, low, high, search]
    page_outputs = [table, number, where]
    outputs = [summary, *page_outputs, confusion, per_class, favoured, density]

    gr.on([c.change for c in filters if c is not search] + [search.submit],
          lambda *values: refresh(name, *values), [*filters, sort, descending, head], outputs,
          api_visibility="private", trigger_mode="always_last")
    gr.on([sort.change, descending.change], lambda *values: turn_page(name, 0, *values), [*filters, sort, descending],
          page_outputs, api_visibility="private", trigger_mode="always_last")
    head.change(lambda *values: redraw_heads(name, *values), [*filters, head], [favoured, density],
                api_visibility="private", trigger_mode="always_last")
    for button, step in ((previous, -1), (following, 1)):
        button.click(lambda current, *values, step=step: turn_page(name, current + step, *values),
                     [number, *filters, sort, descending], page_outputs, api_visibility="private")

    def cell(evt: gr.SelectData):
        row, col = evt.index
        if col == 0:  # the label column: not a cell of the matrix
            return gr.skip(), gr.skip()
        return v.labels[row], v.labels[col - 1]

    confusion.select(cell, None, [label, predicted], api_visibility="private")

    def open_row(evt: gr.SelectData):
        return gr.Tabs(selected=opener.tab_id), opened_value(name, int(evt.row_value[0]))

    fn, inputs, explain_outputs = opener.explain
    table.select(open_row, None, [tabs, opener.source], api_visibility="private").then(
        fn, inputs, explain_outputs, api_visibility="private")
