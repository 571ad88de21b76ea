"""A whole dataset's explanations as one table: what `python -m daam.explain_dataset` wrote, read once, then filtered,
paged and summed up without recomputing anything.

Torch-free (pyarrow, pandas, numpy): the app's Dataset tab and its /dataset_<name> endpoint read it, and so can a
notebook. Per-position values (relevance, each head's gate) are flattened once at read time, so every aggregate
over a filtered set of rows is a masked bincount or mean, not a loop over rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TABLE_COLUMNS = ["id", "input", "label", "predicted_label", "confidence", "correct", "comprehensiveness", "sufficiency"]
SORTS = {"id": "id", "confidence": "confidence", "comprehensiveness": "comprehensiveness",
         "sufficiency": "sufficiency"}
PAGE_ROWS = 20
MIN_TOKEN_COUNT = 3  # a token seen fewer times is not ranked: one lucky occurrence says nothing about a head


@dataclass(frozen=True)
class Filters:
    """Which rows to show: every condition must hold. `search` is a case-insensitive substring of the input."""

    errors_only: bool = False
    label: str | None = None
    predicted: str | None = None
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    search: str = ""


class DatasetView:
    """The rows of one explained dataset (explain_dataset's Parquet parts), with the arrays aggregates need."""

    def __init__(self, table, labels: list[str]) -> None:
        """table: a pyarrow Table of explain_dataset's rows (any order; kept sorted by id)."""
        import pyarrow.compute as pc

        if table.num_rows == 0:
            raise ValueError("the explained dataset has no rows")
        table = table.take(pc.sort_indices(table, [("id", "ascending")]))
        self.frame = table.drop_columns(["gates", "z_counts"]).to_pandas()
        self.labels = list(labels)
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted(set(self.frame["label"]) - set(index) | set(self.frame["predicted_label"]) - set(index))
        if unknown:
            raise ValueError(f"the explained dataset has labels the checkpoint does not: {unknown}")
        self.label_index = self.frame["label"].map(index).to_numpy()
        self.predicted_index = self.frame["predicted_label"].map(index).to_numpy()
        self.searchable = self.frame["input"].str.lower()
        # Every position of every row, flat (P,), straight from Arrow's list buffers: no loop over rows.
        relevance = table.column("relevance").combine_chunks()
        lengths = relevance.value_lengths().to_numpy()
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.row_of_position = np.repeat(np.arange(len(lengths)), lengths)
        self.position_index = np.arange(lengths.sum()) - starts[self.row_of_position]
        self.relevance = relevance.flatten().to_numpy().astype(np.float64)
        gates = table.column("gates").combine_chunks()  # per row (heads, n): heads x n values, head-major
        heads = int(gates.value_lengths().to_numpy()[0])
        flat = gates.flatten().flatten().to_numpy()
        row_start = heads * starts[self.row_of_position]
        self.gates = np.stack([flat[row_start + h * lengths[self.row_of_position] + self.position_index]
                               for h in range(heads)])  # (heads, P)
        labels_of = pc.dictionary_encode(table.column("position_labels").combine_chunks().flatten())
        self.token_of_position = labels_of.indices.to_numpy()  # (P,) a code per position label
        self.tokens = np.asarray(labels_of.dictionary.to_pylist(), dtype=object)
        counts = table.column("z_counts").combine_chunks().flatten().flatten().to_numpy()
        self.z_counts = counts.reshape(table.num_rows, heads, -1).astype(np.int64)  # (rows, heads, bins)

    @classmethod
    def read(cls, directory: str | Path, labels: list[str]) -> "DatasetView":
        """Every part-*.parquet in `directory` (explain_dataset's output), read once."""
        import pyarrow.parquet as pq

        directory = Path(directory)
        parts = sorted(directory.glob("part-*.parquet"))
        if not parts:
            raise FileNotFoundError(f"no explained dataset in {directory} (python -m daam.explain_dataset writes one)")
        return cls(pq.read_table(parts), labels)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def heads(self) -> int:
        return self.gates.shape[0]

    @property
    def measured(self) -> bool:
        """Whether the rows carry trust measures (a modality with a deletion test)."""
        return bool(self.frame["comprehensiveness"].notna().any())

    # ------------------------------------------------------------------------------------------------ rows
    def rows(self, filters: Filters = Filters()) -> np.ndarray:
        """The indices of the rows that pass every filter, in the table's order."""
        keep = np.ones(len(self.frame), dtype=bool)
        confidence = self.frame["confidence"].to_numpy()
        keep &= (confidence >= filters.min_confidence) & (confidence <= filters.max_confidence)
        if filters.errors_only:
            keep &= ~self.frame["correct"].to_numpy()
        if filters.label:
            keep &= self.label_index == self.labels.index(filters.label)
        if filters.predicted:
            keep &= self.predicted_index == self.labels.index(filters.predicted)
        if filters.search.strip():
            keep &= self.searchable.str.contains(filters.search.strip().lower(), regex=False).to_numpy()
        return np.flatnonzero(keep)

    def page(self, rows: np.ndarray, number: int, sort: str = "id", descending: bool = False,
             size: int = PAGE_ROWS) -> pd.DataFrame:
        """Page `number` (from 0) of these rows sorted by `sort` (SORTS), as the table's columns."""
        if sort not in SORTS:
            raise ValueError(f"sort by one of {sorted(SORTS)}, not {sort!r}")
        values = self.frame[SORTS[sort]].to_numpy()[rows]
        order = np.argsort(-values if descending else values, kind="stable")
        start = max(0, number) * size
        return self.frame.iloc[rows[order[start:start + size]]][TABLE_COLUMNS]

    # ------------------------------------------------------------------------------------------------ aggregates
    def confusion(self, rows: np.ndarray) -> np.ndarray:
        """(labels, labels) counts: true label down, predicted across."""
        k = len(self.labels)
        cells = self.label_index[rows] * k + self.predicted_index[rows]
        return np.bincount(cells, minlength=k * k).reshape(k, k)

    def per_class(self, rows: np.ndarray) -> pd.DataFrame:
        """Per true label: items, accuracy, and the trust measures' mean and standard deviation."""
        frame = self.frame.iloc[rows]
        grouped = frame.groupby("label", sort=False)
        out = pd.DataFrame({"items": grouped.size(), "accuracy": grouped["correct"].mean()})
        for measure in ("comprehensiveness", "sufficiency"):
            out[f"{measure} mean"] = grouped[measure].mean()
            out[f"{measure} sd"] = grouped[measure].std(ddof=0)
        return out.reindex([label for label in self.labels if label in out.index]).rename_axis("label").reset_index()

    def trust(self, rows: np.ndarray) -> dict[str, tuple[float, float]]:
        """Comprehensiveness and sufficiency over these rows: (mean, standard deviation) each."""
        frame = self.frame.iloc[rows]
        return {m: (float(frame[m].mean()), float(frame[m].std(ddof=0))) for m in ("comprehensiveness", "sufficiency")}

    def favoured_tokens(self, rows: np.ndarray, head: int | None = None, top: int = 12,
                        min_count: int = MIN_TOKEN_COUNT) -> dict[str, pd.DataFrame]:
        """The position labels (tokens) with the highest mean relevance, and with the highest mean gate of `head`
        (None: the mean of heads), over their occurrences in these rows; only labels seen at least `min_count`
        times are ranked. Columns: token, mean, count."""
        chosen = np.zeros(len(self.frame), dtype=bool)
        chosen[rows] = True
        at = chosen[self.row_of_position]
        codes = self.token_of_position[at]
        count = np.bincount(codes, minlength=len(self.tokens))
        gate = self.gates[:, at].mean(0) if head is None else self.gates[head, at]
        out = {}
        for name, values in (("relevance", self.relevance[at]), ("gate", gate)):
            mean = np.bincount(codes, weights=values, minlength=len(self.tokens)) / np.maximum(count, 1)
            mean[count < min_count] = -np.inf
            best = np.argsort(-mean, kind="stable")[:top]
            best = best[np.isfinite(mean[best])]
            out[name] = pd.DataFrame({"token": self.tokens[best], "mean": mean[best], "count": count[best]})
        return out

    def mean_relevance(self, rows: np.ndarray) -> np.ndarray:
        """(labels, positions) the mean relevance at each position over these rows, per true label (NaN where no row
        of the label reaches that position: rows of different lengths are aligned at their first position)."""
        chosen = np.zeros(len(self.frame), dtype=bool)
        chosen[rows] = True
        at = chosen[self.row_of_position]
        k, width = len(self.labels), int(self.position_index.max()) + 1
        cells = self.label_index[self.row_of_position[at]] * width + self.position_index[at]
        total = np.bincount(cells, weights=self.relevance[at], minlength=k * width)
        count = np.bincount(cells, minlength=k * width)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / count).reshape(k, width)

    def z_histogram(self, rows: np.ndarray) -> np.ndarray:
        """(heads, bins) how many of the position stage's z-values fell in each explanation.Z_EDGES bin, these rows."""
        return self.z_counts[rows].sum(0)
