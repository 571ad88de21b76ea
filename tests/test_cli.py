"""The training command lines: bad arguments and missing data end them with a message and status 2, no traceback."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from daam.cli import build_parser, parse, settings_for
from daam.data.fashion_mnist import read_idx
from daam.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def test_missing_data_is_a_data_error_not_an_exit():
    with pytest.raises(DataError, match="Fashion-MNIST not found in /nowhere"):
        read_idx(Path("/nowhere"), "train")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["daam.train", "daam.compare"])
def test_a_command_on_missing_data_says_so_without_a_traceback(command, tmp_path):
    out = ["--out", str(tmp_path / "ckpt")] if command == "daam.train" else ["--checkpoint", "checkpoints/image"]
    done = subprocess.run([sys.executable, "-m", command, "image", "--builtin-data", str(tmp_path / "missing"), *out],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"python -m {command}: Fashion-MNIST not found in {tmp_path / 'missing'}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--epochs", "-3"], ["--seeds", "0"], ["--heads", "two"],
                                  ["--density-lr", "0"], ["--batch-size", "0"], ["--weight-decay", "-0.1"],
                                  ["--head-diversity", "x"]])
def test_counts_and_rates_must_be_above_zero(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser("train", "").parse_args(["text", *argv])
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_an_explicit_epoch_count_is_used_and_an_absent_one_is_the_modalitys():
    args = parse(build_parser("train", ""), ["text", "--epochs", "1"])
    assert settings_for(args).epochs == 1
    default = settings_for(parse(build_parser("train", ""), ["text"]))
    assert default.epochs == 6 and settings_for(SimpleNamespace(**vars(args) | {"epochs": None})).epochs == 6


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


BAD_DATA = {  # name: (what to write, the message's telling part)
    "missing file": (None, "no such file"),
    "other columns": (("label,sentence", ["fresh,Great."] * 30), "has no category or text column; its columns: "
                                                                 "['label', 'sentence']"),
    "header only": (("category,text", []), "no examples were read"),
    "one class": (("category,text", [f"fresh,Great film number {i}." for i in range(30)]),
                  "every example has the label 'fresh'"),
    "three rows": (("category,text", ["fresh,Good.", "rotten,Bad.", "fresh,Fine."]), "leave the val and test split empty"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_training_data_ends_the_run_with_what_is_wrong_and_writes_nothing(case, tmp_path, capsys):
    from daam.train import main

    content, message = BAD_DATA[case]
    data = tmp_path / "data.csv"
    if content is not None:
        _csv(data, *content)
    with pytest.raises(SystemExit) as done:
        main(["text", "--builtin-data", str(data), "--out", str(tmp_path / "ckpt")])
    assert done.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


def test_unreadable_bytes_are_said_to_be_no_utf8_csv(tmp_path):
    from daam.data.rotten_tomatoes import load

    bad = tmp_path / "data.csv"
    bad.write_bytes(b"category,text\nfresh,\xff\xfe\x00bad\n")
    with pytest.raises(DataError, match="could not be read as a UTF-8 CSV"):
        load(bad)


def test_a_class_that_never_reaches_training_is_named():
    from daam.data import Task, check

    task = Task("toy", ["a", "b"], list("xxxxy"), [0, 0, 0, 0, 1], {"train": [0, 1], "val": [2], "test": [3, 4]}, {})
    with pytest.raises(DataError, match="too few examples of 'b' \\(1\\) to reach the training split"):
        check(task)


def test_every_train_setting_is_a_flag_and_a_flag_not_given_keeps_the_modalitys_default():
    from dataclasses import fields

    from daam.settings import TrainSettings

    args = parse(build_parser("train", ""), ["audio", "--batch-size", "16", "--weight-decay", "0", "--lr", "1e-3"])
    settings = settings_for(args)
    assert (settings.batch_size, settings.weight_decay, settings.lr) == (16, 0.0, 1e-3)
    assert settings.epochs == 10 and settings.head_diversity == TrainSettings().head_diversity  # audio's, the default's
    assert all(hasattr(args, f.name) for f in fields(TrainSettings))
