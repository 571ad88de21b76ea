"""Your own data and encoder: python -m daam.train --data PATH [--encoder DIR] --out DIR (daam.data.files)."""

import argparse
import os
import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from daam import load_pretrained
from daam.data import check
from daam.data.files import infer_modality, task
from daam.errors import DataError
from daam.train import main as train

ROOT = Path(__file__).resolve().parents[1]
WORDS = "good great fine bad awful dull film plot acting the a was and very not".split()


def tiny_bert(directory: Path) -> Path:
    """A 2-layer, 32-wide random BERT and its word-level tokenizer, saved as a Hugging Face model directory."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    BertTokenizerFast(vocab=vocab).save_pretrained(directory)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(directory)
    return directory


def reviews(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Distinct sentences, alternately pos and neg, whose adjectives decide the label (up to 324 of them)."""
    nouns, adjectives = ["film", "plot", "acting"], {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "dull"]}
    pools = {label: [f"the {n1} was {a1} and the {n2} was {very} {a2}" for n1 in nouns for a1 in words
                     for n2 in nouns for a2 in words for very in ("very", "a")]
             for label, words in adjectives.items()}
    rng = random.Random(seed)
    for pool in pools.values():
        rng.shuffle(pool)
    return [(pools[label][i // 2], label) for i in range(count) for label in ["pos" if i % 2 == 0 else "neg"]]


def write_csv(path: Path, header: list[str], rows: list, delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def files_args(data: Path, modality: str = "text", **options) -> argparse.Namespace:
    defaults = dict(data=str(data), modality=modality, text_column="text", label_column="label", label_names=None,
                    max_length=64)
    return argparse.Namespace(**(defaults | options))


@pytest.mark.slow
def test_a_csv_and_a_local_bert_become_a_checkpoint_that_explains(tmp_path):
    long = " ".join(["the film was very good"] * 20)  # 100 words: beyond the 64 tokens a training run reads
    data = write_csv(tmp_path / "reviews.csv", ["text", "label"], reviews(300) + [("", "pos"), ("  ", "neg"), (long, "pos")])
    bert = tiny_bert(tmp_path / "bert")
    out = tmp_path / "ckpt"
    train(["--data", str(data), "--encoder", str(bert), "--out", str(out), "--seeds", "2", "--epochs", "10"])
    assert {"model.safetensors", "config.json", "metrics.json", "training_curves.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    assert not list(tmp_path.glob(".ckpt.partial-*"))
    metrics = json.loads((out / "metrics.json").read_text())
    d = metrics["data"]
    assert (d["examples"], d["found"], d["class_balance"]) == (301, 303, {"neg": 150, "pos": 151})
    assert d["skipped"]["reasons"] == {"empty text": 2} and metrics["labels"] == ["neg", "pos"] and d["truncated"] == 1
    assert set(metrics["results"]) == {"daam", "mean_pool_probe", "attention_pool"}
    assert metrics["results"]["daam"]["test_accuracy"]["mean"] > 0.8  # the adjective decides; chance is 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["encoder"]["kwargs"] == {"path": str(bert.resolve())} and config["labels"] == ["neg", "pos"]
    card = (out / "README.md").read_text()
    assert str(data.resolve()) in card and "neg 150, pos 151" in card and "2 of 303 items were skipped" in card
    assert "1 texts were longer than the 64 tokens" in card
    model = load_pretrained(out)  # the encoder is rebuilt from the directory config.json names
    e = model.explain("the film was very awful")
    assert e.labels == ["neg", "pos"] and e.position_labels == ["[CLS]", "the", "film", "was", "very", "awful", "[SEP]"]
    # the out-of-distribution detector, fitted by the run from its own splits: few held-out items flagged
    assert (out / "ood.safetensors").is_file() and model.ood is not None
    ood = metrics["ood"]
    sizes = metrics["split"]["sizes"]
    assert ood["fitted_on"] == {"train": sizes["train"], "val": sizes["val"]} and ood["test_items"] == sizes["test"]
    assert ood["test_flagged"] <= 0.1 and "## Is this input like the training data?" in card
    unknown = model.explain("zebra quartz jukebox vortex")  # every word outside the vocabulary: [UNK]
    assert isinstance(e.ood_score, float) and unknown.out_of_distribution and unknown.ood_score > e.ood_score


def test_table_formats_columns_splits_and_label_names(tmp_path):
    rows = reviews(40)
    tsv = write_csv(tmp_path / "r.tsv", ["review", "y"], rows, delimiter="\t")
    t = task(files_args(tsv, text_column="review", label_column="y"))
    assert (t.labels, len(t.inputs), t.provenance["split"]["source"]) == (["neg", "pos"], 40, "stratified")
    assert sorted(len(v) for v in t.split.values()) == [4, 4, 32]

    split = ["train"] * 30 + ["validation"] * 4 + ["test"] * 6
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps({"text": x, "label": int(y == "pos"), "split": s}) + "\n"
                             for (x, y), s in zip(rows, split)))
    t = task(files_args(jsonl, label_names="negative,positive"))
    assert t.labels == ["negative", "positive"] and t.targets[:2] == [1, 0]
    assert (t.split["train"], t.split["val"], t.split["test"]) == (list(range(30)), list(range(30, 34)), list(range(34, 40)))
    assert t.provenance["split"]["source"] == "the data's own"

    folder = tmp_path / "parquet"
    folder.mkdir()
    import pandas as pd

    pd.DataFrame(rows[:32], columns=["text", "label"]).to_parquet(folder / "train.parquet")
    pd.DataFrame(rows[32:], columns=["text", "label"]).to_parquet(folder / "test.parquet")
    t = task(files_args(folder))
    assert len(t.split["test"]) == 8 and len(t.split["train"]) + len(t.split["val"]) == 32 and t.split["val"]
    assert {t.targets[i] for i in t.split["val"]} == {0, 1}  # validation carved from training, stratified
    check(t)
    assert infer_modality(tsv) == infer_modality(folder) == "text"


def test_bad_tables_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="no 'text' column; its columns: review, label"):
        task(files_args(write_csv(tmp_path / "a.csv", ["review", "label"], reviews(10))))
    with pytest.raises(DataError, match="b.csv: no rows"):
        task(files_args(write_csv(tmp_path / "b.csv", ["text", "label"], [])))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: no rows"):
        task(files_args(tmp_path / "empty.csv"))
    with pytest.raises(DataError, match="no usable examples"):
        task(files_args(write_csv(tmp_path / "g.csv", ["text", "label"], [("", "a"), (" ", "b")])))
    one_class = task(files_args(write_csv(tmp_path / "c.csv", ["text", "label"], [(x, "pos") for x, _ in reviews(20)])))
    with pytest.raises(DataError, match="two classes or more"):
        check(one_class)
    with pytest.raises(DataError, match=r"too few examples of 'meh' \(1\) to put one in each"):
        task(files_args(write_csv(tmp_path / "d.csv", ["text", "label"], reviews(30) + [("the plot", "meh")])))
    duplicated = task(files_args(write_csv(tmp_path / "h.csv", ["text", "label"], reviews(30) + reviews(30)[:5])))
    assert len(duplicated.inputs) == len(set(x for x, _ in reviews(30)))
    assert duplicated.provenance["skipped"]["reasons"]["duplicate text"] >= 5
    with pytest.raises(DataError, match="labels 7 are neither"):
        task(files_args(write_csv(tmp_path / "e.csv", ["text", "label"], [("x", 0), ("y", 7)]), label_names="a,b"))
    with pytest.raises(DataError, match="not a table"):
        infer_modality(write_csv(tmp_path / "f.txt", ["text"], []))


def test_the_command_line_stops_on_bad_data_and_a_bad_encoder_with_a_message_and_writes_nothing(tmp_path, capsys):
    data = write_csv(tmp_path / "reviews.csv", ["text", "label"], reviews(40))
    (tmp_path / "not-a-model").mkdir()
    vit = tmp_path / "vit"
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
              image_size=32, patch_size=16).save_pretrained(vit)
    cases = {
        ("--data", str(tmp_path / "missing.csv")): "no such file or directory",
        ("--data", str(data), "--label-column", "stars"): "no 'stars' column; its columns: text, label",
        ("--data", str(data), "--encoder", str(tmp_path / "not-a-model")): "no config.json",
        ("--data", str(data), "--encoder", str(vit)): "a vit model reads images; the data is text",
        ("--data", str(data), "--encoder", "no-such-encoder"): "neither the built-in text encoder",
        ("--data", str(data), "--modality", "image"): "no class folders",
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as stop:
            train([*argv, "--out", str(tmp_path / "out")])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        train(["--out", str(tmp_path / "out")])
    assert "name a built-in dataset" in capsys.readouterr().err


def test_an_image_folder_skips_and_counts_unreadable_pictures_and_stops_when_too_many(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("circle", "square"):
        (tmp_path / "pics" / label).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "pics" / label / f"{i}.png")
    (tmp_path / "pics" / "square" / "broken.png").write_bytes(b"\x89PNG not really")
    path = tmp_path / "pics"
    assert infer_modality(path) == "image"
    t = task(files_args(path, "image"))
    assert (t.labels, len(t.inputs)) == (["circle", "square"], 60)
    assert t.provenance["skipped"]["items"] == [{"item": "square/broken.png", "reason": "unreadable (UnidentifiedImageError)"}]
    for i in range(4):
        (tmp_path / "pics" / "circle" / f"bad{i}.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="5 of 65 files could not be read"):
        task(files_args(path, "image"))


def test_an_audio_folder_with_split_folders(tmp_path):
    import soundfile

    for split, count in (("train", 8), ("test", 3)):
        for label in ("yes", "no"):
            folder = tmp_path / "clips" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                soundfile.write(folder / f"{i}.flac", np.zeros(800 * (i + 1)), 8000 if i % 2 else 22050)
    (tmp_path / "clips" / "train" / "no" / "x.wav").write_bytes(b"RIFF")
    path = tmp_path / "clips"
    assert infer_modality(path) == "audio"
    t = task(files_args(path, "audio"))
    assert t.labels == ["no", "yes"] and len(t.split["test"]) == 6 and len(t.split["train"]) + len(t.split["val"]) == 16
    assert t.provenance["skipped"]["count"] == 1 and t.provenance["split"]["validation"]


def test_the_shipped_example_dataset_is_what_its_script_makes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_reviews", ROOT / "examples" / "data" / "make_reviews.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(ROOT / "examples" / "data" / "reviews.csv", newline="") as f:
        assert [tuple(r) for r in csv.reader(f)][1:] == module.reviews()


@pytest.mark.slow
def test_the_app_serves_a_users_checkpoint_with_its_title_examples_and_endpoint(tmp_path, monkeypatch):
    import gradio as gr

    import app
    from daam.compare import main as compare
    from ui import inputs, playground_tab, serving

    out = tmp_path / "My Reviews"
    train(["--data", str(ROOT / "examples" / "data" / "reviews.csv"), "--out", str(out), "--quick"])
    with pytest.raises(SystemExit):  # not a checkpoint: a message, status 2, nothing served
        app.main(["--checkpoint", str(tmp_path)])
    monkeypatch.setattr(serving, "_chosen", None)  # restored after the test: the shipped checkpoints again
    caches = (serving.loaded, playground_tab.playground_heads, serving._mechanisms)
    try:
        serving.serve([str(out)])
        assert list(serving.served()) == ["my_reviews"]
        config = app.build().get_config_file()
        tabs = [c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"]
        assert "reviews" in tabs and "reviews checkpoint" in tabs and "Text" not in tabs  # the card's title
        assert "explain_my_reviews" in {d.get("api_name") for d in config["dependencies"]}
        examples = inputs.examples_of("my_reviews")  # from its test split: no examples ship with it
        assert len(examples) == 6 and all(text for text, _ in examples)
        answer = serving.endpoint("explain", "my_reviews")("The kettle broke after a week.")
        assert answer["labels"] == ["negative", "positive"] and answer["modality"] == "text"
        with pytest.raises(gr.Error, match="python -m daam.compare --checkpoint"):
            serving.endpoint("compare", "my_reviews")("The kettle broke after a week.")
        # The comparison reads the data back from the checkpoint; its heads then answer /compare_<name>.
        compare(["--checkpoint", str(out), "--mechanisms", "mean", "--seeds", "1", "--faithfulness-items", "4"])
        rows = serving.endpoint("compare", "my_reviews")("The kettle broke after a week.")["rows"]
        assert [row["name"] for row in rows] == ["daam", "mean"]
    finally:
        for cache in caches:
            cache.cache_clear()


def tiny_image_model(family: str, directory: Path) -> Path:
    """A tiny random Hugging Face image model of a family, with its image processor, saved to a directory."""
    from transformers import (ConvNextConfig, ConvNextImageProcessor, ConvNextModel, ResNetConfig, ResNetModel,
                              ViTConfig, ViTImageProcessor, ViTModel)

    torch.manual_seed(0)
    if family == "vit":
        ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
                           image_size=32, patch_size=8)).save_pretrained(directory)  # 4 states: an "early" OOD view
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
        return directory
    if family == "convnext":
        ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).save_pretrained(directory)
    else:
        ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")).save_pretrained(directory)
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=1.0).save_pretrained(directory)
    return directory


def coloured_pictures(root: Path, count: int) -> Path:
    """Pictures of two classes: a red or a blue square on noise, somewhere in the picture."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, colour in (("red", [220, 30, 30]), ("blue", [30, 30, 220])):
        (root / label).mkdir(parents=True)
        for i in range(count):
            picture = rng.integers(60, 160, (48, 48, 3), dtype=np.uint8)
            y, x = rng.integers(0, 24, 2)
            picture[y:y + 24, x:x + 24] = colour
            Image.fromarray(picture).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("family", ["vit", "convnext", "resnet"])
def test_a_local_image_model_of_each_family_gives_grid_features_and_cell_relevance(family, tmp_path):
    from daam.modalities.image import PretrainedImageEncoder

    encoder = PretrainedImageEncoder(str(tiny_image_model(family, tmp_path / family)))
    pictures = coloured_pictures(tmp_path / "pictures", 2)
    out = encoder([str(p) for p in sorted(pictures.rglob("*.png"))])
    assert out.features.shape == (4, encoder.grid ** 2, sum(encoder.channels)) and len(encoder.channels) >= 3
    assert out.extras[0].image.shape == (encoder.size, encoder.size, 3)  # seen in colour
    def score(features):
        return features.square().mean((1, 2))

    relevance = encoder.input_relevance(out, score)  # a forward pass of its own: `out` has no graph
    assert out.graph_input is None and not out.features.requires_grad
    assert relevance.shape == (4, encoder.grid ** 2) and relevance.abs().sum() > 0
    kept = encoder([str(p) for p in sorted(pictures.rglob("*.png"))], keep_graph=True)
    torch.testing.assert_close(kept.features.detach(), out.features)
    torch.testing.assert_close(encoder.input_relevance(kept, score), relevance)


@pytest.mark.slow
def test_an_image_folder_and_a_local_vit_become_a_checkpoint_that_explains_in_colour(tmp_path):
    from daam.faithfulness import check as deletion_check

    pictures = coloured_pictures(tmp_path / "pictures", 40)
    vit = tiny_image_model("vit", tmp_path / "vit")
    out = tmp_path / "ckpt"
    train(["--data", str(pictures), "--encoder", str(vit), "--out", str(out), "--seeds", "1", "--epochs", "6",
           "--dim", "16"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["blue", "red"] and metrics["data"]["format"] == "imagefolder"
    assert metrics["results"]["daam"]["test_accuracy"]["mean"] >= 0.75  # colour decides; chance is 0.5
    model = load_pretrained(out)
    e = model.explain(str(pictures / "red" / "0.png"))
    assert e.extras.image.shape == (32, 32, 3) and e.position_relevance.shape == (16,)
    assert e.relevance_method == "encoder_gradient"
    assert set(model.ood.views) == {"head", "mixed", "encoder", "early"}  # its first two of 4 states: daam.ood
    assert e.ood_score is not None and e.out_of_distribution is not None
    result = deletion_check(model, str(pictures / "red" / "0.png"))
    assert result["units"] == 16 and result["unit"] == "cells"


def tiny_audio_model(family: str, directory: Path) -> Path:
    """A tiny random Hugging Face audio model of a family, with its feature extractor, saved to a directory."""
    from transformers import (HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model,
                              WhisperConfig, WhisperFeatureExtractor, WhisperModel)

    torch.manual_seed(0)
    small = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                 conv_dim=(8, 8, 8, 8, 8, 8, 8), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    if family == "whisper":
        WhisperModel(WhisperConfig(d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                   decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, num_mel_bins=80,
                                   vocab_size=64, max_source_positions=1500, pad_token_id=1, bos_token_id=2,
                                   eos_token_id=2, decoder_start_token_id=3)).save_pretrained(directory)
        WhisperFeatureExtractor().save_pretrained(directory)
        return directory
    (Wav2Vec2Model(Wav2Vec2Config(**small)) if family == "wav2vec2" else HubertModel(HubertConfig(**small))).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "whisper"])
def test_a_local_audio_model_of_each_family_gives_a_layer_per_hidden_state_and_a_silent_reference(family, tmp_path):
    from daam.modalities.audio import PretrainedSpeechEncoder

    encoder = PretrainedSpeechEncoder(str(tiny_audio_model(family, tmp_path / family)))
    rng = np.random.default_rng(0)
    clips = [(16000, rng.normal(0, 0.3, 16000).astype(np.float32)), (8000, rng.normal(0, 0.3, 4000).astype(np.float32))]
    out = encoder(clips)
    assert out.features.shape[:2] == (2, 3) and out.features.shape[3] == 16  # embeddings + 2 blocks
    frames = out.mask.sum(1).tolist()
    assert frames[0] > frames[1] >= 20 and len(out.position_labels[1]) == frames[1]  # ~50 frames a second
    reference = encoder.reference_features(out)
    assert reference.shape == out.features.shape and not torch.equal(reference, out.features)


@pytest.mark.slow
def test_an_audio_folder_and_a_local_wav2vec2_become_a_checkpoint_without_the_speech_probe(tmp_path):
    import soundfile

    from daam.faithfulness import check as deletion_check
    from daam.modalities import no_answer

    rng = np.random.default_rng(0)
    for label in ("tone", "noise"):
        (tmp_path / "sounds" / label).mkdir(parents=True)
        for i in range(100):
            t = np.arange(int(16000 * rng.uniform(0.4, 0.8))) / 16000
            sound = (0.3 * np.sin(2 * np.pi * rng.uniform(200, 400) * t) if label == "tone"
                     else rng.normal(0, 0.1, len(t)))
            soundfile.write(tmp_path / "sounds" / label / f"{i}.wav", sound.astype(np.float32), 16000)
    out = tmp_path / "ckpt"
    train(["--data", str(tmp_path / "sounds"), "--encoder", str(tiny_audio_model("wav2vec2", tmp_path / "w2v")),
           "--out", str(out), "--seeds", "1", "--epochs", "40", "--heads", "2"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["noise", "tone"] and metrics["data"]["format"] == "audiofolder"
    assert metrics["results"]["daam"]["test_accuracy"]["mean"] >= 0.7  # chance is 0.5
    model = load_pretrained(out)
    clip = str(tmp_path / "sounds" / "tone" / "0.wav")
    e = model.explain(clip)
    assert e.extras.speech_probability is None and no_answer(e) in (None, "low confidence")  # no speech gate
    assert e.relevance_method == "reference" and len(e.position_relevance) == len(e.position_labels) > 10
    assert deletion_check(model, clip)["units"] == len(e.position_labels)


@pytest.mark.slow
def test_a_second_run_on_the_same_data_reuses_its_features_and_no_cache_keeps_none(tmp_path, monkeypatch):
    monkeypatch.setenv("DAAM_FEATURE_CACHE", str(tmp_path / "features"))
    data = write_csv(tmp_path / "reviews.csv", ["text", "label"], reviews(120))
    bert = tiny_bert(tmp_path / "bert")
    argv = ["--data", str(data), "--encoder", str(bert), "--seeds", "1", "--epochs", "2"]
    train([*argv, "--out", str(tmp_path / "first")])
    shards = {p: p.stat().st_mtime_ns for p in (tmp_path / "features").rglob("shard-*")}
    assert len({p.parent for p in shards}) == 1 and shards
    train([*argv, "--out", str(tmp_path / "second")])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "features").rglob("shard-*")} == shards  # not encoded again
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text())["results"] for d in ("first", "second"))
    assert first["daam"]["test_accuracy"] == second["daam"]["test_accuracy"]
    train([*argv, "--out", str(tmp_path / "streamed"), "--no-cache", "--cache-dir", str(tmp_path / "unused")])
    assert not (tmp_path / "unused").exists()
    streamed = json.loads((tmp_path / "streamed" / "metrics.json").read_text())["results"]
    assert abs(streamed["daam"]["test_accuracy"]["mean"] - first["daam"]["test_accuracy"]["mean"]) <= 0.1


@pytest.mark.slow
def test_two_processes_under_torchrun_share_the_encoding_and_train_to_a_one_process_result(tmp_path):
    import subprocess
    import sys

    data = write_csv(tmp_path / "reviews.csv", ["text", "label"], reviews(300))
    bert = tiny_bert(tmp_path / "bert")
    argv = ["-m", "daam.train", "--data", str(data), "--encoder", str(bert), "--seeds", "2", "--epochs", "10",
            "--shard-items", "40"]
    runs = {}
    for processes in (1, 2):
        cache, out = tmp_path / f"features-{processes}", tmp_path / f"ckpt-{processes}"
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
        done = subprocess.run([sys.executable, *launcher, *argv, "--out", str(out)], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, env=dict(os.environ, DAAM_FEATURE_CACHE=str(cache)))
        assert done.returncode == 0, done.stderr[-3000:]
        runs[processes] = json.loads((out / "metrics.json").read_text())
        shards = [json.loads(p.read_text()) for p in sorted(cache.rglob("shard-*.json"))]
        items = [i for shard in shards for i in shard["items"]]
        assert sorted(items) == list(range(300)) and len(shards) == 8  # every item encoded exactly once
        assert {shard["encoded_by"] for shard in shards} == set(range(processes))  # the work shared out
        assert done.stdout.count("wrote ") == 1 and not list(tmp_path.glob(f".ckpt-{processes}.partial-*"))
    one, two = runs[1], runs[2]
    assert (one["processes"], two["processes"]) == (1, 2) and one["split"] == two["split"]
    spread = max(one["results"]["daam"]["test_accuracy"]["sd"], two["results"]["daam"]["test_accuracy"]["sd"], 0.05)
    assert abs(one["results"]["daam"]["test_accuracy"]["mean"] - two["results"]["daam"]["test_accuracy"]["mean"]) <= 2 * spread
    assert two["results"]["daam"]["test_accuracy"]["mean"] > 0.8


@pytest.mark.slow
def test_explain_dataset_writes_a_parquet_row_per_item_in_parts_and_resumes(tmp_path):
    import pyarrow.parquet as pq

    from daam.dataset_view import DatasetView
    from daam.explain_dataset import main as explain_dataset
    from daam.faithfulness import trust_measures, unit_case

    data = write_csv(tmp_path / "reviews.csv", ["text", "label"], reviews(120))
    checkpoint = tmp_path / "ckpt"
    train(["--data", str(data), "--encoder", str(tiny_bert(tmp_path / "bert")), "--out", str(checkpoint),
           "--seeds", "1", "--epochs", "2"])
    out = tmp_path / "explained"
    explain_dataset(["--checkpoint", str(checkpoint), "--out", str(out), "--part-items", "50"])
    parts = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.read_table(out).to_pylist()
    assert sorted(row["id"] for row in table) == list(range(120))
    assert {row["split"] for row in table} == {"train", "val", "test"}
    row = next(r for r in table if r["id"] == 7)
    e = load_pretrained(checkpoint).explain(row["input"])
    assert (row["label"], row["predicted_label"]) == (reviews(120)[7][1], e.predicted_label)
    np.testing.assert_allclose(row["relevance"], e.position_relevance, rtol=1e-5, atol=1e-6)
    assert np.asarray(row["gates"]).shape == e.position_weights.shape and row["position_labels"] == e.position_labels
    written = {p.name: p.stat().st_mtime_ns for p in parts}
    parts[1].unlink()  # a part that was never finished: the next run writes it, and only it
    explain_dataset(["--checkpoint", str(checkpoint), "--out", str(out), "--part-items", "50"])
    assert {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("part-*.parquet")) if p.name != parts[1].name} == {
        k: v for k, v in written.items() if k != parts[1].name} and parts[1].exists()
    explain_dataset(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "test"), "--split", "test"])
    assert {r["split"] for r in pq.read_table(tmp_path / "test").to_pylist()} == {"test"}
    # what the dataset view reads: confidence, correct, the z-values counted per head, the trust measures
    model = load_pretrained(checkpoint)
    target = e.labels.index(e.predicted_label)
    assert row["confidence"] == pytest.approx(e.probabilities[target], abs=1e-6)
    assert row["correct"] == (row["label"] == row["predicted_label"]) and row["media"] is None
    np.testing.assert_array_equal(row["z_counts"], e.z_counts["positions"])
    case = unit_case(model, row["input"])
    expected = trust_measures(case, case.per_unit(e.position_relevance), target)
    assert row["comprehensiveness"] == pytest.approx(expected["comprehensiveness"], abs=1e-5)
    assert row["sufficiency"] == pytest.approx(expected["sufficiency"], abs=1e-5)
    # by default into the checkpoint's dataset/ folder, where the app looks; --items: a sample of the split
    explain_dataset(["--checkpoint", str(checkpoint), "--split", "test", "--items", "5"])
    view = DatasetView.read(checkpoint / "dataset", model.config.labels)
    assert len(view) == 5 and set(view.frame["split"]) == {"test"} and view.measured


def test_explain_dataset_numbers_other_files_labels_as_the_checkpoint_does():
    from daam.data import Task
    from daam.explain_dataset import in_label_order

    task = Task("reviews", ["fresh", "rotten"], ["good", "bad", "fine"], [0, 1, 0], {"test": [0, 1, 2]}, {})
    assert in_label_order(task, ["rotten", "fresh"]).targets == [1, 0, 1]
    assert in_label_order(task, ["rotten", "fresh"]).labels == ["rotten", "fresh"]
    with pytest.raises(DataError, match="not the checkpoint's"):
        in_label_order(task, ["rotten", "meh"])
