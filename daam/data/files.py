"""Your own data: `python -m daam.train --data PATH --out DIR`.

    text    a CSV, TSV, JSONL or Parquet file (or a directory of train.* / validation.* / test.* files): a text and
            a label column ("text" and "label" unless --text-column / --label-column say otherwise)
    image   a directory with one subfolder per class (Hugging Face's imagefolder layout; train/, validation/ and
            test/ folders above them and a metadata.csv are honoured)
    audio   a directory with one subfolder per class (the audiofolder layout), any length, any sample rate
            soundfile reads

Text files and image folders are read by Hugging Face `datasets` (local files only). Audio folders are listed
here in the same layout: `datasets`' audiofolder needs torchcodec even to list paths, and clips are decoded by
soundfile anyway. Labels: strings as they are, a ClassLabel's names, or integers named by --label-names. Splits: a
`split` column or the files' / folders' own train / validation / test are honoured; otherwise a seeded stratified
80/10/10 split. A text seen before is kept once. Empty or unlabelled rows and unreadable images and clips are
skipped, counted and listed in metrics.json; more than MAX_UNREADABLE of them stops the run."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from ..errors import DataError
from . import SPLIT_SEED, Task, stratified_split

TEXT_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "val", "valid": "val", "val": "val",
               "dev": "val", "test": "test", "testing": "test"}
MAX_UNREADABLE = 0.05  # of the items found: beyond this the data, not a stray file, is the problem
LISTED = 50  # skipped items named in metrics.json; the rest are counted


def infer_modality(path: Path) -> str:
    """text for a table file or a directory of them; image or audio for a folder of such files, by what it holds."""
    if path.is_file():
        if path.suffix.lower() in TEXT_FORMATS:
            return "text"
        raise DataError(f"{path}: a {path.suffix or 'suffix-less'} file is not a table this reads "
                        f"({', '.join(sorted(TEXT_FORMATS))}); images and audio come as a folder of class folders")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    counts = Counter()
    for _, _, files in os.walk(path):
        for name in files:
            suffix = Path(name).suffix.lower()
            counts["image"] += suffix in IMAGE_SUFFIXES
            counts["audio"] += suffix in AUDIO_SUFFIXES
            counts["text"] += suffix in TEXT_FORMATS and name != "metadata.csv"
    kind, found = counts.most_common(1)[0] if counts else ("", 0)
    if not found:
        raise DataError(f"{path} holds no table, image or audio file; pass --modality if its files have other "
                        "suffixes")
    return kind


def task(args) -> Task:
    """The Task of --data PATH for args.modality (daam.cli infers it when --modality does not say it)."""
    path = Path(args.data).expanduser().resolve()
    read = {"text": _text_rows, "image": _image_rows, "audio": _audio_rows}.get(args.modality)
    if read is None:
        raise DataError(f"--data reads text, image or audio; the {args.modality} modality has no reader for files")
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if args.modality != "text" and not path.is_dir():
        raise DataError(f"{path}: {args.modality} data is a folder with one subfolder per class (no class folders here)")
    rows, skipped, form = read(path, args)
    found = len(rows) + len(skipped)
    if not rows:
        raise DataError(f"{path}: no usable examples" + (f" ({_reasons(skipped)})" if skipped else ""))
    if args.modality != "text" and len(skipped) > MAX_UNREADABLE * found:
        raise DataError(f"{path}: {len(skipped)} of {found} files could not be read ({_reasons(skipped)}; first: "
                        f"{skipped[0]['item']}); more than {MAX_UNREADABLE:.0%} means the data needs fixing first")
    labels = _label_names([label for _, label, _ in rows], args)
    targets = [labels.index(str(label)) if str(label) in labels else int(label) for _, label, _ in rows]
    balance = Counter(targets)
    split, split_note = _split([s for _, _, s in rows], targets)
    if split_note["source"] == "stratified":
        in_every = set.intersection(*({targets[i] for i in idx} for idx in split.values()))
        small = [f"{labels[c]!r} ({balance[c]})" for c in sorted(balance) if c not in in_every]
        if small:
            raise DataError(f"{path}: too few examples of {', '.join(small)} to put one in each of the training, "
                            "validation and test splits (80/10/10: about 10 a class are needed)")
    inputs = [item for item, _, _ in rows]
    digest = hashlib.sha256("\n".join(f"{t}\t{x}" for x, t in zip(inputs, targets)).encode()).hexdigest()
    return Task(f"{path.name}: {args.modality} classification into {len(labels)} classes", labels, inputs, targets,
                split, {"kind": "files", "card": "daam.data.files:card_sections", "path": str(path), "format": form,
                        "examples": len(rows), "found": found, "sha256": digest,
                        "class_balance": {labels[c]: balance[c] for c in range(len(labels))},
                        "skipped": {"count": len(skipped), "reasons": dict(Counter(s["reason"] for s in skipped)),
                                    "items": skipped[:LISTED]},
                        "split": split_note, "max_length": getattr(args, "max_length", None),
                        "options": {k: getattr(args, k) for k in ("text_column", "label_column", "label_names")}},
                sort_key=len if args.modality == "text" else None)


def _reasons(skipped: list[dict]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in Counter(s["reason"] for s in skipped).most_common())


def _label_names(values: list, args) -> list[str]:
    """Class names in target order: --label-names for integer labels, else the sorted distinct values."""
    if args.label_names:
        names = [n.strip() for n in args.label_names.split(",")]
        bad = sorted({str(v) for v in values if not (str(v).isdigit() and int(v) < len(names)) and str(v) not in names})
        if bad:
            raise DataError(f"--label-names names {len(names)} classes ({', '.join(names)}); labels {', '.join(bad[:5])} "
                            "are neither an index into them nor one of them")
        return names
    distinct = sorted({str(v) for v in values})
    return sorted(distinct, key=int) if all(v.lstrip("-").isdigit() for v in distinct) else distinct


def _split(given: list[str | None], targets: list[int]) -> tuple[dict[str, list[int]], dict]:
    """The data's own split where it has one (a missing validation split is a stratified 1/9 of training, i.e.
    about 10% of all); else a seeded stratified 80/10/10 split."""
    if any(s is None for s in given) or not {"train", "test"} <= set(given):
        return stratified_split(targets, SPLIT_SEED), {"source": "stratified", "seed": SPLIT_SEED,
                                                       "fractions": [0.8, 0.1, 0.1]}
    split = {name: [i for i, s in enumerate(given) if s == name] for name in ("train", "val", "test")}
    note = {"source": "the data's own"}
    if not split["val"]:
        inner = stratified_split([targets[i] for i in split["train"]], SPLIT_SEED, fractions=(8 / 9, 1 / 9, 0.0))
        split["val"] = sorted(split["train"][i] for i in inner["val"] + inner["test"])
        split["train"] = sorted(split["train"][i] for i in inner["train"])
        note |= {"validation": "a stratified 1/9 of the training split", "seed": SPLIT_SEED}
    return split, note


def _split_name(value) -> str | None:
    if value is None:
        return None
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise DataError(f"split {value!r} is none of train, validation, test")
    return name


# ---------------------------------------------------------------------------- readers: (rows, skipped, format)
def _load(path: Path, builder: str, **kwargs):
    """A DatasetDict read from local files only; a DataError naming the path for anything unreadable."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(builder, **kwargs)
    except Exception as error:  # pyarrow's and datasets' parse errors share no base class
        cause = error.__cause__ or error
        if "corresponds to no data" in str(cause) or isinstance(cause, (StopIteration, EOFError)):
            raise DataError(f"{path}: no rows (an empty file, or a header alone)") from None
        raise DataError(f"{path} could not be read as {builder}: {type(cause).__name__}: {str(cause)[:300]}") from None


def _column(part, name: str) -> list:
    """A column of a loaded split as a list, converted from Arrow whole: iterating a `datasets` column formats it
    row by row, 1.4 s against 0.04 s for 100,000 sentences."""
    return part.with_format("arrow")[name].to_pylist()


def _table_files(path: Path) -> dict[str, list[str]]:
    """A file is one split (its rows may carry a split column); a directory's files are named by their split."""
    if path.is_file():
        return {"train": [str(path)]}
    files: dict[str, list[str]] = {}
    for file in sorted(path.iterdir()):
        split = SPLIT_NAMES.get(file.stem.lower().split(".")[0])
        if file.suffix.lower() in TEXT_FORMATS and split:
            files.setdefault({"train": "train", "val": "validation", "test": "test"}[split], []).append(str(file))
    if not files:
        raise DataError(f"{path}: a directory of text data needs files named train, validation or test "
                        f"({', '.join(sorted(TEXT_FORMATS))})")
    return files


def _text_rows(path: Path, args):
    files = _table_files(path)
    suffixes = {Path(f).suffix.lower() for fs in files.values() for f in fs}
    if len(suffixes) > 1:
        raise DataError(f"{path}: mixed file types {sorted(suffixes)}; use one")
    suffix = suffixes.pop()
    empty = [f for fs in files.values() for f in fs if os.path.getsize(f) == 0]
    if empty:
        raise DataError(f"{empty[0]}: no rows (an empty file)")
    options = {"delimiter": "\t"} if suffix == ".tsv" else {}
    table = _load(path, TEXT_FORMATS[suffix], data_files=files, **options)
    rows, skipped, seen = [], [], set()
    for split_name, part in table.items():
        missing = [c for c in (args.text_column, args.label_column) if c not in part.column_names]
        if missing:
            raise DataError(f"{path}: no {' or '.join(repr(c) for c in missing)} column; its columns: "
                            f"{', '.join(part.column_names)} (--text-column and --label-column name others)")
        label_feature = part.features[args.label_column]
        names = getattr(label_feature, "names", None)  # a ClassLabel
        splits = _column(part, "split") if "split" in part.column_names and len(files) == 1 else [split_name] * len(part)
        for number, (text, label, split) in enumerate(zip(_column(part, args.text_column),
                                                          _column(part, args.label_column), splits)):
            where = f"{split_name} row {number + 1}"
            if not isinstance(text, str) or not text.strip():
                skipped.append({"item": where, "reason": "empty text"})
            elif label is None or (isinstance(label, str) and not label.strip()):
                skipped.append({"item": where, "reason": "no label"})
            elif text.strip() in seen:  # kept once: a copy in another split would be tested on what trained it
                skipped.append({"item": where, "reason": "duplicate text"})
            else:
                seen.add(text.strip())
                rows.append((text.strip(), names[label] if names else label, _split_name(split)))
    return rows, skipped, suffix.lstrip(".")


def _image_rows(path: Path, args):
    from PIL import Image

    import datasets

    table = _load(path, "imagefolder", data_dir=str(path))
    rows, skipped = [], []
    for split_name, part in table.items():
        if "label" not in part.column_names:
            raise DataError(f"{path}: no class folders (one subfolder per class) and no label in a metadata.csv")
        part = part.cast_column("image", datasets.Image(decode=False))
        names = getattr(part.features["label"], "names", None)
        for entry, label in zip(_column(part, "image"), _column(part, "label")):
            file = entry["path"]
            try:
                with Image.open(file) as image:
                    image.verify()  # reads the whole file: a truncated or corrupt picture fails here, not mid-run
            except Exception as error:  # PIL raises many kinds for bad files
                skipped.append({"item": os.path.relpath(file, path), "reason": f"unreadable ({type(error).__name__})"})
                continue
            rows.append((file, names[label] if names else label, _split_name(split_name)))
    return rows, skipped, "imagefolder"


def _audio_rows(path: Path, args):
    """Class folders, optionally below train/ validation/ test/ folders: (file, class, split) for each clip."""
    import soundfile

    top = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    split_dirs = {SPLIT_NAMES[name]: p for name, p in top.items() if name in SPLIT_NAMES}
    roots = split_dirs.items() if split_dirs else [(None, path)]
    rows, skipped = [], []
    for split, root in roots:
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for file in sorted(class_dir.rglob("*")):
                if file.suffix.lower() not in AUDIO_SUFFIXES:
                    continue
                try:
                    info = soundfile.info(str(file))
                    if info.frames == 0:
                        raise ValueError("no samples")
                except Exception as error:  # libsndfile's errors, an empty clip
                    skipped.append({"item": os.path.relpath(file, path), "reason": f"unreadable ({type(error).__name__})"})
                    continue
                rows.append((str(file), class_dir.name, split))
    if not rows and not skipped:
        raise DataError(f"{path}: no class folders of audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return rows, skipped, "audiofolder"


def card_sections(metrics: dict, config) -> dict:
    """The model card of a checkpoint trained on a user's files."""
    d, split, skipped = metrics["data"], metrics["split"], metrics["data"]["skipped"]
    balance = ", ".join(f"{name} {n}" for name, n in d["class_balance"].items())
    reasons = ", ".join(f"{n} {reason}" for reason, n in skipped["reasons"].items())
    skipped_text = (f"{skipped['count']} of {d['found']} items were skipped ({reasons}; listed in `metrics.json`)."
                    if skipped["count"] else "No item was skipped.")
    truncated = (f" {d['truncated']} texts were longer than the {d.get('max_length')} tokens a training run reads "
                 "and were truncated." if d.get("truncated") else "")
    if split.get("source") == "stratified":
        how = f"a stratified {split.get('fractions')} split with seed {split.get('seed')}"
    else:
        how = "the data's own split" + (f" ({split['validation']})" if split.get("validation") else "")
    encoder = config.encoder.get("name")
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in d.get("options", {}).items()
                       if v is not None and (config.modality == "text" or k == "label_names"))
    rebuilt = f" --encoder {config.encoder['kwargs']['path']}" if "path" in config.encoder.get("kwargs", {}) else ""
    return dict(
        title=Path(d["path"]).stem, pipeline_tag=f"{config.modality}-classification", tag="custom-data", goal=None,
        architecture=f"Density Adaptive Attention over a **frozen** `{encoder}` encoder: DAAM across its "
                     f"{config.num_layers} hidden states",
        saved="Only the adapter, the DAAM parameters and the head are in `model.safetensors`; the encoder is rebuilt "
              f"from `config.json` ({encoder}).",
        data=f"""Data: `{d['path']}` ({d['format']}), {d['examples']} examples in {len(metrics['labels'])} classes:
{balance}. {skipped_text}{truncated} Split: {how}; sizes {split['sizes']}. Data sha256 `{d['sha256'][:16]}…`.""",
        encoder=f"`{encoder}`, frozen. Preprocessing: {config.preprocessing or 'the encoder’s own'}.",
        reproduce=f"python -m daam.train --data {d['path']} --modality {config.modality} {options}{rebuilt} --out DIR",
        limitations="Trained on the data above only; accuracy and explanations say nothing of inputs unlike it. "
                    "Explanations describe what the model uses, not what is true of the input.")


COLUMN_OPTIONS = {"text_column": "text", "label_column": "label", "label_names": None}  # the command line's defaults


def trained_on(checkpoint: Path) -> tuple[str, dict]:
    """A checkpoint's modality (config.json) and what its metrics.json says of its data ({} where it has none); a
    DataError when it is not a checkpoint."""
    import json

    directory = Path(checkpoint)
    try:
        modality = json.loads((directory / "config.json").read_text())["modality"]
    except (OSError, ValueError, KeyError):
        raise DataError(f"{directory} is not a checkpoint: its config.json names no modality") from None
    try:
        return modality, json.loads((directory / "metrics.json").read_text())["data"]
    except (OSError, ValueError, KeyError):
        return modality, {}


def task_of_checkpoint(checkpoint: Path, data: str | None = None) -> Task:
    """The Task of the files a checkpoint was trained on (its metrics.json names them and their options), or of other
    files, `data`, read with the same options; a DataError for a checkpoint of a built-in dataset without `data`."""
    import argparse

    modality, recorded = trained_on(checkpoint)
    own = recorded if recorded.get("kind") == "files" else {}
    if data is None and not own:
        raise DataError(f"{checkpoint} was trained on a built-in dataset; pass --data with the files to read")
    return task(argparse.Namespace(data=data or own["path"], modality=modality, max_length=own.get("max_length"),
                                   **COLUMN_OPTIONS | own.get("options", {})))


def test_examples(checkpoint: Path, count: int | None = 6) -> list:
    """The first `count` inputs (None: all) of the test split of the files a checkpoint was trained on (its
    metrics.json names them), as explain() takes them; empty for a checkpoint of a built-in dataset, or when the
    files are gone."""
    try:
        held_out = task_of_checkpoint(checkpoint)
    except DataError:
        return []
    return [held_out.inputs[i] for i in held_out.split["test"][:count]]
