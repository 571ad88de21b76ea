"""Adding a modality is one registry entry: this file registers a toy one (strings of letters, one position per
letter) whose entry names code in this file alone, and the training command, the model card, checkpoint loading,
the Explanation and the deletion test pick it up with no other file touched."""

import json
import random

import pytest
import torch
import torch.nn as nn

from daam import Explanation, load_pretrained
from daam.data import SPLIT_SEED, Task, stratified_split
from daam.encoders import Encoded
from daam.faithfulness import check
from daam.modalities import MODALITIES, Modality

LETTERS = "abcdx"


class ToyEncoder(nn.Module):
    """Each letter a fixed random vector (layer "letters"), and the running mean of them (layer "so far")."""

    modality = "toy"
    name = "toy-letters"
    position_axis = 2
    layer_names = ["letters", "so far"]
    dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.randn(len(LETTERS), self.dim, generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def forward(self, strings: list[str]) -> Encoded:
        longest = max(len(s) for s in strings)
        features = torch.zeros(len(strings), 2, longest, self.dim)
        mask = torch.zeros(len(strings), longest, dtype=torch.bool)
        for i, s in enumerate(strings):
            letters = self.table[[LETTERS.index(c) for c in s]]
            features[i, 0, :len(s)] = letters
            features[i, 1, :len(s)] = letters.cumsum(0) / torch.arange(1, len(s) + 1)[:, None]
            mask[i, :len(s)] = True
        return Encoded(features, mask, [list(s) for s in strings], [""] * len(strings), [None] * len(strings))


class ToyCase:
    """The deletion test's view: a string cut into its letters; a removed letter is dropped."""

    unit = "letters"
    removal = "letters removed"

    def __init__(self, model, string: str) -> None:
        self.model, self.source, self.units = model, string, len(string)

    def per_unit(self, position_scores):
        return position_scores

    @torch.no_grad()
    def probabilities(self, keeps):
        kept = ["".join(c for c, k in zip(self.source, keep) if k) or "a" for keep in keeps]
        encoded = self.model.encoder(kept)
        return self.model(encoded.features, encoded.mask).softmax(-1).numpy()


def task(args) -> Task:
    """Strings of 4-8 letters; the label: is there an x in it."""
    rng = random.Random(0)
    strings = ["".join(rng.choice(LETTERS[:-1]) for _ in range(rng.randint(4, 8))) for _ in range(160)]
    strings = [s if i % 2 else s[:2] + "x" + s[3:] for i, s in enumerate(strings)]
    labels = [int("x" in s) for s in strings]
    return Task("toy strings: is there an x", ["no x", "x"], strings, labels, stratified_split(labels, SPLIT_SEED),
                {"examples": len(strings)})


def build(args):
    encoder = ToyEncoder()
    return encoder, dict(layer_names=encoder.layer_names, dim=encoder.dim)


def card_sections(metrics: dict, config) -> dict:
    return dict(title="toy strings", pipeline_tag="text-classification", tag="toy", goal=0.5,
                architecture="DAAM over a toy encoder", saved="The DAAM parameters and the head.",
                data=f"{metrics['data']['examples']} generated strings.", encoder="A fixed random vector per letter.",
                reproduce="pytest tests/test_adding_a_modality.py", limitations="A toy.")


@pytest.fixture
def toy_modality(monkeypatch):
    here = __name__
    entry = Modality("toy", "Toy", "text", "letters", encoder=f"{here}:ToyEncoder", task=f"{here}:task",
                     build=f"{here}:build", card=f"{here}:card_sections", case=f"{here}:ToyCase",
                     train_defaults={"epochs": 4, "lr": 1e-2})
    monkeypatch.setitem(MODALITIES, "toy", entry)
    return entry


@pytest.mark.slow
def test_a_modality_registered_in_one_place_trains_explains_and_is_checked(toy_modality, tmp_path):
    from daam.train import main

    main(["toy", "--out", str(tmp_path / "toy"), "--seeds", "1", "--heads", "2", "--densities", "2"])
    metrics = json.loads((tmp_path / "toy" / "metrics.json").read_text())
    assert set(metrics["results"]) == {"daam", "mean_pool_probe", "attention_pool"}  # DAAM beside both baselines
    card = (tmp_path / "toy" / "README.md").read_text()
    assert "# DAAM toy checkpoint: toy strings" in card and "160 generated strings" in card

    model = load_pretrained(tmp_path / "toy")
    explanation = Explanation.from_json(model.explain("abxcd").to_json())
    assert explanation.modality == "toy" and explanation.labels == ["no x", "x"]
    assert explanation.position_labels == list("abxcd") and explanation.layer_names == ["letters", "so far"]
    assert explanation.relevance_method == toy_modality.relevance == "pool"
    assert explanation.head_relevance.shape == (2, 5)

    deletion = check(model, "abxcd")  # through the entry's case
    assert deletion["unit"] == "letters" and deletion["units"] == 5 and len(deletion["relevance"]) == 4


@pytest.mark.slow
def test_an_interrupted_run_leaves_no_half_written_checkpoint(toy_modality, tmp_path, monkeypatch):
    from daam import train

    out = tmp_path / "toy"
    argv = ["toy", "--out", str(out), "--seeds", "1", "--heads", "2", "--densities", "2", "--epochs", "1"]

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # the last file of a run's checkpoint fails
        patched.setattr(train, "write_card", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train.main(argv)
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no staging folder

    train.main(argv)
    (out / "comparison.json").write_text("{}")  # what a comparison adds, which a later run keeps
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "training_curves.json", "README.md"} < set(before)
    with monkeypatch.context() as patched:
        patched.setattr(train, "write_card", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train.main(argv)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # the earlier checkpoint, untouched
    assert [path.name for path in tmp_path.iterdir()] == ["toy"]


@pytest.mark.slow
def test_the_app_gives_a_registered_modality_its_tab_and_named_endpoints(toy_modality, tmp_path, monkeypatch):
    import app
    from daam.train import main
    from ui import playground_tab, serving

    main(["toy", "--out", str(tmp_path / "toy"), "--seeds", "1", "--heads", "2", "--densities", "2", "--epochs", "1"])
    monkeypatch.setattr(serving, "CHECKPOINTS", tmp_path)  # the toy checkpoint and no other
    caches = (serving.loaded, playground_tab.playground_heads)
    for cache in caches:
        cache.cache_clear()
    try:
        config = app.build().get_config_file()
        tabs = [c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"]
        assert "Toy" in tabs and "Toy checkpoint" in tabs  # its own tab, and its card under Models
        names = {d.get("api_name") for d in config["dependencies"]}
        assert {"explain_toy", "compare_toy"} <= names
        answer = serving.endpoint("explain", "toy")("abxcd")
        assert answer["modality"] == "toy" and answer["position_labels"] == list("abxcd")
        assert answer["relevance_method"] == "pool"
    finally:
        for cache in caches:  # the other tests see the shipped checkpoints again
            cache.cache_clear()
