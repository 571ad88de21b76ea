"""The command line of a run on one modality's task, shared by `python -m daam.train` and `python -m daam.compare`:
its arguments (TrainSettings' fields among them, one flag each), the task and settings they prepare, and how a run
ends on bad data."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

import torch.nn as nn

from .data import Task, check, files
from .data.files import infer_modality
from .errors import DataError
from .modalities import MODALITIES, modality
from .model import DAAMConfig
from .settings import TrainSettings


def positive(kind: type, strictly: bool = True) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` above zero (or, not strictly, at least zero), or the command line's usage
    error that says so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not (value > 0 if strictly else value >= 0):
            raise argparse.ArgumentTypeError(f"must be {'above' if strictly else 'at least'} 0, got {text}")
        return value
    return parse


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag per field of TrainSettings (--batch-size for batch_size), its help and bound from the field's metadata;
    a flag not given stays None, so the modality's default applies (settings_for)."""
    for setting in fields(TrainSettings):
        kind = int if setting.type == "int" else float
        parser.add_argument(f"--{setting.name.replace('_', '-')}", type=positive(kind, setting.metadata.get("positive", False)),
                            help=f"{setting.metadata['help']} (default: the modality's, else {setting.default})")


def settings_for(args) -> TrainSettings:
    """The modality's TrainSettings, with the command line's flags applied (--quick: a 2-epoch, 2-seed smoke run)."""
    chosen = {s.name: getattr(args, s.name) for s in fields(TrainSettings) if getattr(args, s.name, None) is not None}
    settings = TrainSettings(**modality(args.modality).train_defaults | chosen)
    if args.quick:
        settings.epochs, args.seeds = 2, 2
        args.train_images, args.val_images, args.test_images = 1000, 200, 300
    return settings


def run_command(parser: argparse.ArgumentParser, work: Callable[[], object]) -> None:
    """Run a command's work; missing or unusable data (DataError) ends it with its message and status 2."""
    try:
        work()
    except DataError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")


def build_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The command line of a run on one modality's task (shared by daam.train and daam.compare)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builtin", nargs="?", choices=sorted(MODALITIES), metavar="MODALITY",
                        help=f"train on this modality's built-in dataset ({', '.join(sorted(MODALITIES))}); with --data, "
                             "the modality of the data")
    parser.add_argument("--data", help="your own data (daam.data.files): a CSV, TSV, JSONL or Parquet file, or a folder "
                                       "with one subfolder of images or audio clips per class")
    parser.add_argument("--modality", choices=sorted(MODALITIES), help="the modality of --data (default: inferred from it)")
    parser.add_argument("--encoder", help="a built-in encoder's name (the modality's by default) or a local directory "
                                          "of a Hugging Face model: BERT-, RoBERTa-, DistilBERT-like for text; ViT-, "
                                          "ConvNeXt-, ResNet-like for images; Wav2Vec2-, HuBERT-, Whisper-like for audio")
    parser.add_argument("--text-column", default="text", help="--data: the column of the text")
    parser.add_argument("--label-column", default="label", help="--data: the column of the label")
    parser.add_argument("--label-names", help="--data: comma-separated class names for integer labels 0, 1, ...")
    parser.add_argument("--builtin-data", help="where a built-in dataset's files are: text, a CSV with category,text "
                                               "columns; image, a directory of Fashion-MNIST idx files")
    parser.add_argument("--seeds", type=positive(int), default=3)
    parser.add_argument("--heads", type=positive(int), default=4)
    parser.add_argument("--densities", type=positive(int), default=3)
    parser.add_argument("--dim", type=positive(int), default=96, help="image: width of the adapter's hidden states")
    parser.add_argument("--max-length", type=int, default=64, help="text: tokens kept per training snippet")
    parser.add_argument("--train-images", type=int, default=15_000, help="image: training images used")
    parser.add_argument("--val-images", type=int, default=2_000, help="image: validation images (from training)")
    parser.add_argument("--test-images", type=int, default=10_000, help="image: official test images used")
    # 4, not 2: chosen on validation voices, for a longer run (README, "Trained checkpoints")
    parser.add_argument("--languages-per-voice", type=int, default=4, help="audio: espeak-ng languages per variant")
    parser.add_argument("--augmented-copies", type=int, default=2, help="audio: augmented copies of each training clip")
    parser.add_argument("--speaker-draws", type=int, default=8,
                        help="audio: times each flite or Festival training voice says every letter (validation: half)")
    parser.add_argument("--position-mechanism", choices=["daam", "daam_score"],
                        help="DAAM over every channel, or over a learned score per head (DAAMConfig.position_mechanism; "
                             "default: the modality's)")
    parser.add_argument("--pooling", choices=["mean", "gate"],
                        help="mean of the gated positions, or the gates as pooling weights (DAAMConfig.pooling; "
                             "default: the modality's)")
    parser.add_argument("--offset-spread", type=float,
                        help="initial offsets of the position stage's densities, from -spread to +spread "
                             "(DAAMConfig.offset_spread; default: the modality's)")
    add_settings_arguments(parser)
    parser.add_argument("--cache-dir", help="where encoder features are kept between runs (default: "
                                            "$DAAM_FEATURE_CACHE, else ~/.cache/daam-lens/features)")
    parser.add_argument("--shard-items", type=positive(int), help="items per feature shard: the unit a killed run "
                                                                    "resumes from and processes share (default 4096)")
    parser.add_argument("--no-cache", action="store_true",
                        help="keep no features: the encoder runs for every batch (data too large for the disk)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: 2 epochs, 2 seeds, little data")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with args.modality from the positional MODALITY, --modality or what --data holds; a usage
    error when none says."""
    args = parser.parse_args(argv)
    if getattr(args, "checkpoint", None) and not (args.builtin or args.modality or args.data):
        _from_checkpoint(args)
    given = {m for m in (args.builtin, args.modality) if m}
    if len(given) > 1:
        parser.error(f"MODALITY {args.builtin} and --modality {args.modality} disagree")
    if not given and not args.data:
        parser.error("name a built-in dataset (MODALITY: " + ", ".join(sorted(MODALITIES)) + ") or pass --data PATH")
    if given:
        args.modality = given.pop()
    else:
        try:
            args.modality = infer_modality(Path(args.data).expanduser())
        except DataError as error:
            parser.exit(2, f"{parser.prog}: {error}\n")
    return args


def _from_checkpoint(args) -> None:
    """What a checkpoint was trained on, from its config.json and metrics.json: for one of a user's files
    (daam.data.files) --data, its options and --modality; else its modality's built-in dataset. Nothing where the
    checkpoint does not say (parse() then asks for MODALITY or --data)."""
    try:
        modality, data = files.trained_on(args.checkpoint)
    except DataError:
        return
    if not data:  # a checkpoint without its metrics says nothing of its data
        return
    if data.get("kind") != "files":
        args.builtin = modality
        return
    args.modality, args.data = modality, data["path"]
    for option in files.COLUMN_OPTIONS:
        setattr(args, option, data.get("options", {}).get(option, getattr(args, option)))


def checkpoint_task(checkpoint: Path, data: str | None = None, builtin_data: str | None = None) -> Task:
    """The data a checkpoint was trained on, as it was split: its files (metrics.json names them) or its modality's
    built-in dataset (from `builtin_data`, else where it is installed); or other files, `data`, read the same way."""
    name, recorded = files.trained_on(checkpoint)
    if data or recorded.get("kind") == "files":
        return files.task_of_checkpoint(checkpoint, data)
    args = parse(build_parser("daam", ""), [name] + (["--builtin-data", builtin_data] if builtin_data else []))
    return modality(name).resolve("task")(args)


def daam_config(args, frozen: nn.Module, labels: list[str], layer_names: list[str], dim: int, **more) -> DAAMConfig:
    """A training run's DAAMConfig: heads and densities from the command line, one layer per name, what the modality's
    build decided (`more`), and the modality's architecture (its registry entry) where the command line does not
    choose."""
    chosen = {name: getattr(args, name) for name in ("position_mechanism", "pooling", "offset_spread")}
    architecture = modality(frozen.modality).architecture | {k: v for k, v in chosen.items() if v is not None}
    more.setdefault("encoder", {"name": frozen.name, "kwargs": {}})
    return DAAMConfig(modality=frozen.modality, labels=list(labels), num_layers=len(layer_names), dim=dim,
                      layer_heads=args.heads, position_heads=args.heads, layer_densities=args.densities,
                      position_densities=args.densities, layer_names=list(layer_names), **architecture, **more)


def prepare(args) -> tuple[Task, nn.Module, DAAMConfig, float]:
    """The task (--data, or the modality's built-in dataset), the modality's encoder and config (its build, the
    command line and the registry's architecture), and the seconds spent making its data (reading a dataset, or
    synthesising every voice for audio): part of what a run costs, though not of its training time."""
    entry = modality(args.modality)
    started = time.time()
    task = files.task(args) if args.data else entry.resolve("task")(args)
    check(task)
    data_time_s = round(time.time() - started, 1)
    encoder, decided = entry.resolve("build")(args)  # checks --encoder before any encoding
    return task, encoder, daam_config(args, encoder, task.labels, **decided), data_time_s
