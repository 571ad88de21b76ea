"""A whole dataset's explanations (daam.dataset_view over explain_dataset's Parquet), the figures of it (viz.dataset),
and the trust measures' model-randomisation check (daam.faithfulness.randomised)."""

import io

import numpy as np
import pandas as pd
import pytest
import torch

from daam.dataset_view import MIN_TOKEN_COUNT, PAGE_ROWS, DatasetView, Filters
from daam.explanation import Z_EDGES

LABELS = ["cat", "dog", "fox"]


def row(i: int, label: str, predicted: str, confidence: float, tokens: list[str], relevance: list[float],
        heads: int = 2) -> dict:
    """A row as explain_dataset writes it: gates (heads, positions), z counts (heads, bins)."""
    n = len(tokens)
    gates = [[0.1 * (h + 1) + 0.01 * p for p in range(n)] for h in range(heads)]
    z_counts = [np.histogram(np.linspace(-1, 1, 5) + h, Z_EDGES)[0].tolist() for h in range(heads)]
    return {"id": i, "split": "test", "input": " ".join(tokens), "media": None, "label": label,
            "predicted_label": predicted, "confidence": confidence, "correct": label == predicted,
            "probabilities": [confidence, 1 - confidence, 0.0], "position_labels": tokens, "relevance": relevance,
            "gates": gates, "relevance_method": "test", "z_counts": z_counts, "comprehensiveness": 0.1 * (i % 5),
            "sufficiency": -0.05 * (i % 3), "log_odds": -1.0}


def table():
    """Five rows, shuffled: the view sorts them by id."""
    rows = [row(0, "cat", "cat", 0.9, ["the", "cat", "sat"], [0.0, 1.0, 0.2]),
            row(1, "cat", "dog", 0.6, ["a", "cat", "ran", "off"], [0.1, 0.5, 0.3, 0.1]),
            row(2, "dog", "dog", 0.8, ["the", "dog", "sat"], [0.0, 0.9, 0.2]),
            row(3, "dog", "dog", 0.95, ["the", "rare"], [0.0, 5.0]),  # "rare" once: too few to rank
            row(4, "cat", "cat", 0.7, ["the", "cat"], [0.1, 0.8])]
    import pyarrow as pa

    return pa.Table.from_pandas(pd.DataFrame(rows).sample(frac=1, random_state=0), preserve_index=False)


@pytest.fixture
def view() -> DatasetView:
    return DatasetView(table(), LABELS)


def test_filters_keep_exactly_the_rows_that_pass_every_condition(view):
    ids = lambda filters: sorted(view.frame["id"].to_numpy()[view.rows(filters)].tolist())  # noqa: E731
    assert ids(Filters()) == [0, 1, 2, 3, 4]
    assert ids(Filters(errors_only=True)) == [1]
    assert ids(Filters(label="cat")) == [0, 1, 4]
    assert ids(Filters(predicted="dog")) == [1, 2, 3]
    assert ids(Filters(label="cat", predicted="dog")) == [1]
    assert ids(Filters(min_confidence=0.7, max_confidence=0.9)) == [0, 2, 4]
    assert ids(Filters(search="  CAT ")) == [0, 1, 4]
    assert ids(Filters(search="cat", min_confidence=0.8)) == [0]
    assert ids(Filters(label="fox")) == []


def test_pages_sort_and_keep_their_size(view):
    rows = view.rows()
    by_confidence = view.page(rows, 0, "confidence", descending=True)
    assert by_confidence["id"].tolist() == [3, 0, 2, 4, 1]
    assert view.page(rows, 1, "confidence", size=2)["id"].tolist() == [2, 0]
    assert view.page(rows, 9)["id"].tolist() == []
    assert PAGE_ROWS >= 10
    with pytest.raises(ValueError, match="sort by"):
        view.page(rows, 0, "label; drop")


def test_confusion_and_per_class_figures_match_a_count_by_hand(view):
    everything = view.rows()
    assert view.confusion(everything).tolist() == [[2, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert view.confusion(view.rows(Filters(errors_only=True))).sum() == 1
    per_class = view.per_class(everything).set_index("label")
    assert list(per_class.index) == ["cat", "dog"]  # no row of fox: no row for it
    assert per_class.loc["cat", "items"] == 3 and per_class.loc["cat", "accuracy"] == pytest.approx(2 / 3)
    assert per_class.loc["dog", "comprehensiveness mean"] == pytest.approx(np.mean([0.2, 0.3]))
    mean, sd = view.trust(everything)["sufficiency"]
    values = [-0.05 * (i % 3) for i in range(5)]
    assert (mean, sd) == (pytest.approx(np.mean(values)), pytest.approx(np.std(values)))


def test_favoured_tokens_rank_by_mean_over_occurrences_and_skip_rare_ones(view):
    tables = view.favoured_tokens(view.rows(), top=3)
    relevance = tables["relevance"]
    assert "rare" not in set(relevance["token"])  # mean 5.0, but seen once (< MIN_TOKEN_COUNT)
    assert relevance["token"].tolist()[0] == "cat" and relevance["count"].tolist()[0] == 3
    assert relevance["mean"].tolist()[0] == pytest.approx(np.mean([1.0, 0.5, 0.8]))
    assert set(relevance["count"]) >= {MIN_TOKEN_COUNT} or relevance["count"].min() >= MIN_TOKEN_COUNT
    # gates: head 1 is 0.2 + 0.01 x position, so the token seen furthest along on average wins
    gate = view.favoured_tokens(view.rows(), head=1, top=1, min_count=1)["gate"]
    assert gate["token"].tolist() == ["off"] and gate["mean"].tolist() == [pytest.approx(0.23)]
    only_dogs = view.favoured_tokens(view.rows(Filters(label="dog")), min_count=2)["relevance"]
    assert only_dogs["token"].tolist() == ["the"] and only_dogs["count"].tolist() == [2]


def test_mean_relevance_per_class_aligns_rows_at_their_first_position(view):
    mean = view.mean_relevance(view.rows())
    assert mean.shape == (3, 4)
    np.testing.assert_allclose(mean[0], [np.mean([0.0, 0.1, 0.1]), np.mean([1.0, 0.5, 0.8]), 0.25, 0.1])
    assert np.isnan(mean[2]).all()  # no fox
    assert np.isnan(mean[1, 3])  # no dog row has a fourth position
    assert view.z_histogram(view.rows()).sum() == 5 * 2 * 5
    assert view.z_histogram(view.rows(Filters(label="dog"))).shape == (2, len(Z_EDGES) - 1)


def test_bad_explained_datasets_are_refused_in_words(tmp_path):
    with pytest.raises(FileNotFoundError, match="no explained dataset"):
        DatasetView.read(tmp_path, LABELS)
    with pytest.raises(ValueError, match="labels the checkpoint does not"):
        DatasetView(table(), ["cat", "fox"])
    with pytest.raises(ValueError, match="no rows"):
        DatasetView(table().slice(0, 0), LABELS)


def test_pictures_and_clips_are_kept_as_bytes_explain_reads_back():
    import soundfile as sf
    from PIL import Image

    from daam.explain_dataset import media

    assert media("a sentence") == ("a sentence", None)
    picture = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    shown, data = media(picture)
    assert shown == "" and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), picture)
    clip = np.sin(np.linspace(0, 200, 16_000)).astype(np.float32) * 0.5
    _, data = media((16_000, clip))
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 16_000 and np.abs(decoded - clip).max() < 1e-4  # 16-bit FLAC


def test_figures_of_a_dataset_have_titles_and_their_values(view):
    from viz import mixture_curves
    from viz.dataset import class_relevance_maps, confusion_colours, favoured_tokens, relevance_over_positions

    rows = view.rows()
    fig = favoured_tokens(view.favoured_tokens(rows, min_count=1), "head 0")
    assert "favour" in fig.layout.title.text and fig.data[0].y[-1] == "rare"  # the best at the top
    maps = class_relevance_maps(np.arange(27, dtype=float).reshape(3, 9) - 13, LABELS, [True, True, False])
    assert len(maps.data) == 2 and maps.data[0].z.shape == (3, 3) and maps.data[0].zmin == -13
    lines = relevance_over_positions(view.mean_relevance(rows), LABELS, [True, True, False], ["0", "1", "2", "3"])
    assert [t.name for t in lines.data] == ["cat", "dog"]
    colours = confusion_colours(np.array([[9, 0], [3, 1]]))
    assert colours.shape == (2, 2) and "color: #000" in colours[0, 0] and "color: #fff" in colours[0, 1]
    grid = np.linspace(-4, 4, 50)
    stage = {"grid": grid, "curve": np.ones((2, 50)), "components": np.ones((2, 1, 50)), "mode": "mixture"}
    fig = mixture_curves(stage, z_counts=view.z_histogram(rows), z_name="z of these rows")
    histogram = fig.data[0]
    assert histogram.name == "z of these rows" and histogram.type == "bar"
    assert sum(histogram.y) == view.z_histogram(rows)[0].sum()
    with pytest.raises(ValueError, match="bins"):
        mixture_curves(stage, z_counts=view.z_histogram(rows)[:, :-1])


# ------------------------------------------------------------------------------------------ model randomisation
def test_spearman_agrees_with_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    from daam.faithfulness import spearman

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 12), rng.normal(size=12)
        assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic)
    assert spearman(np.ones(5), np.arange(5)) == 0.0


def test_randomisation_redraws_the_part_then_restores_every_weight():
    from daam.faithfulness import randomised
    from daam.model import DAAMClassifier, DAAMConfig

    config = DAAMConfig(modality="text", labels=["a", "b"], num_layers=3, dim=16, layer_heads=2, position_heads=2,
                        layer_densities=3, position_densities=3, layer_names=["l0", "l1", "l2"])
    model = DAAMClassifier(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for part, changed in (("densities", "pool."), ("head", "head.")):
        with randomised(model, part):
            moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
            assert moved and all(k.startswith(changed) for k in moved), (part, moved)
            if part == "densities":
                assert {k.rsplit(".", 1)[-1] for k in moved} == {"mean_offsets", "raw_scales", "mixture_logits"}
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="part must be"):
        with randomised(model, "encoder"):
            pass
