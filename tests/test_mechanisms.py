"""The mechanisms DAAM is compared with: each trains where DAAM sits and says where it looked."""

import json
from pathlib import Path

import pytest
import torch

from daam.compare import MECHANISM_NAMES, compare_input, load_comparison, load_mechanisms
from daam import DAAMClassifier, DAAMConfig
from daam.mechanisms import POOLINGS
from daam.train import TrainSettings, fit

from test_relevance import DIM, LAYERS, POSITIONS, evidence_task


@pytest.fixture(scope="module")
def data():
    cache, where = evidence_task(900, seed=0, marked=True)
    return cache, where, {"train": list(range(700)), "val": list(range(700, 900)), "test": []}


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_each_mechanism_learns_the_task_and_its_weights_are_a_distribution(name, data):
    cache, where, split = data
    torch.manual_seed(0)
    model = DAAMClassifier(DAAMConfig("text", ["minus", "plus"], LAYERS, DIM, pool=name))
    info = fit(model, cache, split, TrainSettings(epochs=3, batch_size=32, head_diversity=0.0), seed=0, desc=name)
    assert info["val_accuracy"] > 0.8  # chance: 0.5
    features, mask, _ = cache.batch(list(range(700, 764)))
    mask[:5, 8:] = False
    logits, weights = model.eval()(features, mask, return_weights=True)
    assert logits.shape == (64, 2) and weights.shape == (64, POSITIONS)
    torch.testing.assert_close(weights.sum(1), torch.ones(64), rtol=1e-4, atol=1e-4)
    assert (weights[:5, 8:] == 0).all() and (weights >= 0).all()
    if name.endswith("attention"):  # a learned score looks at the (marked) evidence more than at the rest
        evidence = torch.zeros_like(weights, dtype=torch.bool)
        for row, positions in enumerate(where[700:764]):
            evidence[row, positions] = True
        evidence &= mask
        assert weights[evidence].mean() > weights[mask & ~evidence].mean()


def test_unknown_pool_and_explaining_without_daam_say_so():
    with pytest.raises(ValueError, match="unknown pool"):
        DAAMClassifier(DAAMConfig("text", ["a", "b"], 2, 8, pool="nope"))
    with pytest.raises(ValueError, match="layers must be"):
        DAAMClassifier(DAAMConfig("text", ["a", "b"], 2, 8, pool="mean", layers="first"))
    with pytest.raises(ValueError, match="explanations need the 'daam' pool"):
        DAAMClassifier(DAAMConfig("text", ["a", "b"], 2, 8, pool="mean")).densities()


ROOT = Path(__file__).resolve().parents[1]
COMPARED = [m for m in ("text", "image", "audio") if (ROOT / "checkpoints" / m / "comparison.json").exists()]
ROW_KEYS = {"name", "accuracy_mean", "accuracy_sd", "seeds", "macro_f1", "parameters", "ms_per_item", "faithfulness", "curve"}


@pytest.mark.parametrize("modality", COMPARED)
def test_shipped_comparison_has_every_mechanism_and_daam_agrees_with_its_metrics(modality):
    directory = ROOT / "checkpoints" / modality
    comparison = load_comparison(directory)
    metrics = json.loads((directory / "metrics.json").read_text())
    rows = {r["name"]: r for r in comparison["mechanisms"]}
    assert set(rows) == set(MECHANISM_NAMES) and len(rows) >= 7
    for row in rows.values():
        assert ROW_KEYS <= set(row) and len(row["seeds"]) >= 3 and len(row["curve"]) == comparison["train_settings"]["epochs"]
        assert 0 < row["accuracy_mean"] <= 1 and row["parameters"] > 0 and row["ms_per_item"] > 0
    assert rows["daam"]["accuracy_mean"] == metrics["results"]["daam"]["test_accuracy"]["mean"]
    assert rows["daam"]["seeds"] == metrics["seeds"]
    for name in set(rows) - {"daam"}:
        weights = directory / "mechanisms" / f"{name}.safetensors"
        assert weights.stat().st_size < 500_000  # a small head: it ships beside the checkpoint


@pytest.mark.parametrize("modality", COMPARED)
def test_every_shipped_mechanism_runs_on_one_input_beside_daam(modality):
    from daam import load_pretrained
    from daam.examples import example_inputs

    daam = load_pretrained(ROOT / "checkpoints" / modality)
    mechanisms = load_mechanisms(ROOT / "checkpoints" / modality, daam)
    item = example_inputs(modality)[0]
    result = compare_input(mechanisms, item)
    assert [r["name"] for r in result["rows"]][0] == "daam" and len(result["rows"]) == len(MECHANISM_NAMES)
    n = len(result["position_labels"])
    for row in result["rows"]:
        assert len(row["position_weights"]) == n and abs(sum(row["position_weights"]) - 1) < 1e-3
        assert row["predicted_label"] in result["labels"]
    assert result["rows"][0]["predicted_label"] == daam.explain(item).predicted_label


def test_a_head_that_does_not_load_is_skipped_with_a_warning(tmp_path):
    import shutil

    from daam import load_pretrained

    source = ROOT / "checkpoints" / "text"
    if not (source / "comparison.json").exists():
        pytest.skip("no text comparison")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, tmp_path / name)
    shutil.copytree(source / "mechanisms", tmp_path / "mechanisms")
    (tmp_path / "mechanisms" / "mean.safetensors").write_bytes(b"not a safetensors file")
    daam = load_pretrained(tmp_path)
    with pytest.warns(RuntimeWarning, match="mean.safetensors does not load"):
        mechanisms = load_mechanisms(tmp_path, daam)
    assert "mean" not in mechanisms and "softmax_attention" in mechanisms and "daam" in mechanisms
