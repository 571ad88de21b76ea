"""The text DAAM classifier: explain(), checkpoint I/O, bad input, the training script, the shipped checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from daam import DAAMClassifier, DAAMConfig, Explanation, load_pretrained
from daam.explanation import JSON_DECIMALS, Z_EDGES, count_z
from daam.modalities.text import TextEncoder

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "text"


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def model(encoder):
    torch.manual_seed(0)
    config = DAAMConfig("text", ["rotten", "fresh"], encoder.num_layers, encoder.dim,
                        layer_names=encoder.layer_names, encoder={"name": encoder.name})
    m = DAAMClassifier(config).eval()
    with torch.no_grad():  # off the symmetric initialisation, so heads differ
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    m.set_encoder(encoder)
    return m


def test_save_load_round_trip_gives_identical_logits(model, encoder, tmp_path):
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    loaded = load_pretrained(tmp_path)
    loaded.set_encoder(encoder)
    batch = encoder(["A gorgeous film.", "Dull, dull, dull and far too long."])
    torch.testing.assert_close(loaded(batch.features, batch.mask), model(batch.features, batch.mask), rtol=0, atol=0)


def test_explain_shapes_and_ranges(model):
    sentences = ["A gorgeous, moving film.", "The worst sequel of the year.", "Fine."]
    for e, text in zip(model.explain_batch(sentences), sentences):
        n = len(e.position_labels)
        assert e.position_labels[0] == "[CLS]" and e.position_labels[-1] == "[SEP]"
        assert e.position_weights.shape == (4, n)
        assert e.layer_importance.shape == (7, 384) and len(e.layer_names) == 7
        assert ((e.position_weights >= 0) & (e.position_weights <= 1)).all()
        assert ((e.layer_importance >= 0) & (e.layer_importance <= 1)).all()
        assert abs(sum(e.probabilities) - 1) < 1e-5 and e.predicted_label == e.labels[int(np.argmax(e.probabilities))]
        assert e.z_counts["positions"].shape == (4, len(Z_EDGES) - 1)
        assert (e.z_counts["positions"].sum(1) == n * 384 // 4).all()  # every real position's z, per head its channels
        assert e.density["positions"].offsets.shape == (4, 3) and e.density["layers"].mode == "mixture"
        d = e.density["positions"]
        assert d.curve.shape == (4, len(d.grid)) and d.components.shape == (4, 3, len(d.grid))
        np.testing.assert_allclose(d.components.sum(1), d.curve, rtol=1e-5)
        assert not e.truncated and e.timings["encoder_ms"] > 0 and e.timings["daam_ms"] > 0
        assert not any(isinstance(v, torch.Tensor) for v in vars(e).values())
    # the counts are count_z's over every real position's z-values of each head, the batch's padding left out
    batch = model.encoder(sentences)
    with torch.no_grad():  # as explain_batch runs it (z's last bit may differ with autograd's functions)
        _, inter = model(batch.features, batch.mask, return_intermediates=True)
    for i, e in enumerate(model.explain_batch(sentences)):
        for stage, z in (("positions", inter.positions.z[i]), ("layers", inter.layers.z[i].transpose(0, 1))):
            z = z[:len(e.position_labels)].numpy()  # (positions, [layers,] channels)
            heads = np.split(z, 4, axis=-1)
            np.testing.assert_array_equal(e.z_counts[stage], np.stack([count_z(h.ravel()) for h in heads]))
    # the batched form gives the same answer as one at a time
    single = model.explain(sentences[1])
    np.testing.assert_allclose(single.probabilities, model.explain_batch(sentences)[1].probabilities, atol=1e-5)


def test_explain_without_layer_details_leaves_out_only_the_layer_stages_parts(model):
    """What explain_dataset asks for: the same explanation, without the Importance Factor and the layer stage's
    z-counts (the layer stage keeps neither its z-values nor its gates)."""
    sentences = ["A gorgeous, moving film.", "The worst sequel of the year, by far."]
    batch = model.encoder(sentences)
    with torch.no_grad():
        logits, inter = model(batch.features, batch.mask, return_intermediates=True, layer_details=False)
    assert inter.layers is None and inter.positions is not None
    torch.testing.assert_close(logits, model(batch.features, batch.mask), rtol=0, atol=0)
    for full, lean in zip(model.explain_batch(sentences), model.explain_batch(sentences, layer_details=False)):
        assert lean.layer_importance.shape == (0, 384) and set(lean.z_counts) == {"positions"}
        np.testing.assert_array_equal(lean.z_counts["positions"], full.z_counts["positions"])
        for field in ("position_weights", "position_relevance", "head_relevance", "probabilities"):
            np.testing.assert_array_equal(getattr(lean, field), getattr(full, field))
        assert (lean.predicted_label, lean.ood_score) == (full.predicted_label, full.ood_score)


def test_json_round_trip(model):
    e = model.explain("Smart and funny.")
    back = Explanation.from_json(e.to_json())
    assert back.position_labels == e.position_labels and back.predicted_label == e.predicted_label
    # floats travel with JSON_DECIMALS places
    close = dict(rtol=0, atol=0.6 * 10.0 ** -JSON_DECIMALS)
    np.testing.assert_allclose(back.position_weights, e.position_weights, **close)
    np.testing.assert_allclose(back.density["layers"].scales, e.density["layers"].scales, **close)
    np.testing.assert_array_equal(back.z_counts["layers"], e.z_counts["layers"])
    plain = e.to_dict()
    assert json.loads(e.to_json()) == plain  # the API's answer is the file's content
    assert all(round(v, JSON_DECIMALS) == v for v in plain["layer_importance"][0])


def test_padded_positions_carry_no_weight(model, encoder):
    """A short sentence batched with a long one: its padding is not in its explanation and changes nothing."""
    short = "Great."
    alone = model.explain(short)
    batched = model.explain_batch([short, "A long, winding, overstuffed and ultimately exhausting epic " * 5])[0]
    assert len(batched.position_labels) == len(alone.position_labels)
    np.testing.assert_allclose(batched.position_weights, alone.position_weights, atol=1e-5)
    np.testing.assert_allclose(batched.probabilities, alone.probabilities, atol=1e-5)
    # and at the gate level: padded positions keep gate 1 (untouched) and are excluded from pooling
    enc = encoder([short, "much longer sentence with many more tokens in it"])
    _, intermediates = model(enc.features, enc.mask, return_intermediates=True)
    pad = ~enc.mask[0]
    assert pad.any() and (intermediates.positions.gate[0, pad] == 1).all()


def test_punctuation_only_input_works(model):
    e = model.explain("?!...")
    assert e.position_labels[1:-1] and np.isfinite(e.position_weights).all()


def test_very_long_input_is_truncated_and_says_so(model):
    e = model.explain("remarkable " * 5000)
    assert e.truncated and len(e.position_labels) == 512


@pytest.mark.parametrize("bad", ["", "   \n\t "])
def test_empty_text_raises_a_clear_value_error(model, bad):
    with pytest.raises(ValueError, match="empty"):
        model.explain(bad)


def test_pickled_checkpoints_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    payload = tmp_path / "pytorch_model.bin"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    payload.write_bytes(pickle.dumps(Exploit()))
    for target in (tmp_path, payload):
        with pytest.raises(ValueError, match="pickled"):
            load_pretrained(target)
    assert not marker.exists()


def test_unknown_hub_id_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline"):
        load_pretrained("someone/daam-text")


@pytest.mark.slow
def test_quick_training_run_end_to_end(tmp_path):
    out = tmp_path / "ckpt"
    proc = subprocess.run(
        [sys.executable, "-m", "daam.train", "text", "--builtin-data", str(ROOT / "tests/data/rt_fixture.csv"),
         "--out", str(out), "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"daam", "mean_pool_probe", "attention_pool"}
    assert metrics["split"]["sizes"] == {"train": 32, "val": 4, "test": 4}  # 'plot' rows dropped
    assert len(metrics["results"]["daam"]["test_accuracy"]["per_seed"]) == 2
    curves = json.loads((out / "training_curves.json").read_text())
    assert len(curves["daam"]["0"]["val_accuracy"]) == 2
    card = (out / "README.md").read_text()
    assert "Smoke-test checkpoint" in card and "| model | test accuracy" in card
    assert load_pretrained(out).config.labels == ["rotten", "fresh"]


# Sentences written for this test (not from the training corpus), with the label a reader would give.
HANDWRITTEN = [
    ("An absolute joy: clever, warm and beautifully acted.", "fresh"),
    ("A stunning achievement that stays with you long after the credits.", "fresh"),
    ("Funny, touching and superbly directed.", "fresh"),
    ("One of the best films I have seen in years.", "fresh"),
    ("A gripping, intelligent thriller with a terrific lead.", "fresh"),
    ("Tedious, shapeless and badly written.", "rotten"),
    ("A boring, lifeless mess that wastes its cast.", "rotten"),
    ("The jokes are stale and the plot is nonsense.", "rotten"),
    ("Painfully dull; I checked my watch every five minutes.", "rotten"),
    ("A lazy, cynical sequel with nothing to say.", "rotten"),
]


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").exists(), reason="no shipped text checkpoint")
def test_shipped_checkpoint_gets_handwritten_sentences_mostly_right():
    """Threshold: at least 8 of the 10 unambiguous sentences (the checkpoint's test accuracy is far above 50%)."""
    shipped = load_pretrained(SHIPPED)
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert metrics["results"]["daam"]["selected_seed"] in metrics["seeds"] and not metrics["quick"]
    predictions = [e.predicted_label for e in shipped.explain_batch([s for s, _ in HANDWRITTEN])]
    correct = sum(p == y for p, (_, y) in zip(predictions, HANDWRITTEN))
    assert correct >= 8, list(zip(predictions, HANDWRITTEN))


def test_save_pretrained_is_the_hub_mixins_and_loading_stays_strict(tmp_path):
    from huggingface_hub import ModelCard, PyTorchModelHubMixin
    from safetensors.torch import load_file, save_file

    model = DAAMClassifier(DAAMConfig("text", ["rotten", "fresh"], num_layers=3, dim=16)).eval()
    assert isinstance(model, PyTorchModelHubMixin)
    model.save_pretrained(tmp_path)
    assert ModelCard.load(tmp_path / "README.md").data.library_name == "daam-lens"  # the mixin's card, for push_to_hub
    weights = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if k != "head.bias"}, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError, match="head.bias"):  # the mixin's own loader would leave it at random
        load_pretrained(tmp_path)
