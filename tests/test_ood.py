"""Saying when an input is unlike the training data: daam.ood's detector, its file, the Explanation's fields and the
app's banner."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from daam.ood import POSITIONS_PER_INPUT, QUANTILE, OODDetector

DIM = 8


def clusters(n: int, seed: int, shift: float = 0.0) -> tuple[dict, torch.Tensor]:
    """Two classes of Gaussian points in both views, the second view a noisy copy of the first."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % 2
    head = torch.randn(n, DIM, generator=g) + 4.0 * targets[:, None] + shift
    return {"head": head, "mixed": head + 0.5 * torch.randn(n, DIM, generator=g),
            "encoder": head + 0.5 * torch.randn(n, DIM, generator=g)}, targets


def test_the_threshold_flags_about_one_in_a_hundred_held_out_items_and_far_ones_all():
    train, targets = clusters(2000, 0)
    validation, _ = clusters(2000, 1)
    detector = OODDetector.fit(train, targets, validation, normalised=False)  # distances of the features as they are
    assert float((detector(validation) > detector.threshold).float().mean()) == pytest.approx(1 - QUANTILE, abs=0.002)
    test, _ = clusters(4000, 2)
    assert float((detector(test) > detector.threshold).float().mean()) < 0.03
    far, _ = clusters(200, 3, shift=-10.0)  # beyond both classes
    assert bool((detector(far) > detector.threshold).all())
    # one view alone moved away is enough: the score is the largest of the views
    one_view = {k: v[:200] for k, v in test.items()} | {"mixed": test["mixed"][:200] + 8.0}
    assert float((detector(one_view) > detector.threshold).float().mean()) > 0.95


def test_a_view_given_position_by_position_scores_an_input_by_its_real_positions_mean_distance():
    g = torch.Generator().manual_seed(0)
    targets = torch.arange(400) % 2
    states = torch.randn(400, 6, DIM, generator=g) + 4.0 * targets[:, None, None]  # (items, positions, dim)
    states[::3, 4:] = float("nan")  # shorter inputs: padding
    train = {"head": states.nanmean(1), "positions": states}
    detector = OODDetector.fit(train, targets, {k: v[:200] + 0.1 for k, v in train.items()}, normalised=False)
    means, precision, _ = detector.views["positions"]
    probe = torch.randn(2, 6, DIM, generator=g)
    probe[1, 3:] = float("nan")
    for item, n in ((0, 6), (1, 3)):  # each real position's distance to its nearest class, averaged
        each = torch.stack([OODDetector.distance(probe[item, p][None], means, precision)[0] for p in range(n)])
        torch.testing.assert_close(OODDetector.distance(probe, means, precision)[item], each.mean())
    # a few positions far from every training position move the input's score, averaged over its positions
    odd = states[:50].clone()
    odd[:, :3] += 12.0
    assert float((detector({"head": states[:50].nanmean(1), "positions": odd}) > detector.threshold).float().mean()) > 0.95


def test_the_mean_of_the_views_flags_an_input_somewhat_far_in_each_that_the_largest_misses():
    """Text's rule (daam.modalities: ood_combine="mean"): a sentence in another language lies a little beyond the
    training data in every view, which only the views' mean adds up; the largest of them waits for one far view."""
    def independent_views(n: int, seed: int) -> dict:  # views that vary apart, as distances in different layers do
        g = torch.Generator().manual_seed(seed)
        return {view: torch.randn(n, DIM, generator=g) + 4.0 * (torch.arange(n) % 2)[:, None]
                for view in ("head", "mixed", "encoder")}

    train, targets, validation = independent_views(2000, 0), torch.arange(2000) % 2, independent_views(2000, 1)
    largest = OODDetector.fit(train, targets, validation, normalised=False)
    mean = OODDetector.fit(train, targets, validation, combine="mean", normalised=False)
    assert mean.combine == "mean" and largest.combine == "max"
    assert float((mean(validation) > mean.threshold).float().mean()) == pytest.approx(1 - QUANTILE, abs=0.002)
    # every view of each probe at 0.9 of its validation quantile: none alone is far
    probe = {}
    for view, (means, precision, scale) in mean.views.items():
        direction = torch.randn(300, DIM, generator=torch.Generator().manual_seed(5))
        length = OODDetector.distance(direction + means[0], means, precision)  # nearest: class 0 for short ones
        probe[view] = means[0] + direction * (0.9 * scale / length)[:, None].sqrt()
    scaled = torch.stack([OODDetector.distance(probe[k], m, p) / s for k, (m, p, s) in mean.views.items()])
    assert bool((scaled < 1).all())
    torch.testing.assert_close(mean(probe), scaled.mean(0))
    assert float((largest(probe) > largest.threshold).float().mean()) < 0.05
    assert float((mean(probe) > mean.threshold).float().mean()) > 0.95
    with pytest.raises(ValueError, match="combine must be one of"):
        OODDetector.fit(train, targets, validation, combine="sum")


def test_each_modality_fits_its_detector_by_its_own_rule():
    from daam.model import DAAMConfig
    from daam.ood import fit_for

    train, targets = clusters(500, 0)
    validation, _ = clusters(500, 1)
    text = fit_for(DAAMConfig("text", ["a", "b"], 2, DIM), train, targets, validation)
    assert (list(text.views), text.combine) == (["head"], "mean")  # the sentence encoder's and the mixed views left out
    image = fit_for(DAAMConfig("image", ["a", "b"], 2, DIM), train, targets, validation)
    assert (list(image.views), image.combine) == (["head", "mixed", "encoder"], "max")


def test_unit_length_views_score_the_pattern_of_the_features_not_their_strength():
    """How strongly an encoder responds varies (a CNN's features scale with contrast); divided by their length, the
    views keep the pattern: a training pattern at an unseen strength is ordinary, an unseen pattern at an ordinary
    strength is not."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(2, DIM, generator=g) + 0.2  # each class's pattern, positive like ReLU features

    def responses(n: int, pattern: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        targets = torch.arange(n) % 2
        base = patterns[targets] if pattern is None else pattern.expand(n, DIM)
        strength = torch.empty(n, 1).uniform_(0.5, 3.0, generator=g)
        head = strength * (base + 0.03 * torch.randn(n, DIM, generator=g))
        return {"head": head, "mixed": head + 0.03 * strength * torch.randn(n, DIM, generator=g)}, targets

    train, targets = responses(2000)
    detector = OODDetector.fit(train, targets, responses(2000)[0])
    raw = OODDetector.fit(train, targets, responses(2000)[0], normalised=False)
    assert detector.normalised and not raw.normalised
    probe, _ = responses(200)
    torch.testing.assert_close(detector({k: 10 * v for k, v in probe.items()}), detector(probe), rtol=1e-2, atol=2e-3)
    stronger = {k: 10 * v for k, v in probe.items()}  # the same patterns, stronger than any training item
    assert float((detector(stronger) > detector.threshold).float().mean()) < 0.05
    assert float((raw(stronger) > raw.threshold).float().mean()) > 0.95
    other, _ = responses(200, pattern=patterns[0].flip(0))  # another pattern at the same strengths
    assert float((detector(other) > detector.threshold).float().mean()) > 0.95


def test_training_items_that_do_not_vary_give_no_detector_but_a_reason():
    same = {view: torch.ones(6, DIM) for view in ("head", "mixed", "encoder")}
    with pytest.raises(ValueError, match="vary too little within their classes"):
        OODDetector.fit(same, torch.arange(6) % 2, same)
    one_each = {view: torch.randn(2, DIM) for view in ("head", "mixed", "encoder")}
    with pytest.raises(ValueError, match="2 training items"):
        OODDetector.fit(one_each, torch.tensor([0, 1]), clusters(5, 1)[0])


def test_the_detector_round_trips_through_its_own_file(tmp_path):
    train, targets = clusters(500, 0)
    detector = OODDetector.fit(train, targets, clusters(500, 1)[0])
    detector.save(tmp_path)
    loaded = OODDetector.load(tmp_path)
    probe = clusters(50, 4, shift=2.0)[0]
    torch.testing.assert_close(loaded(probe), detector(probe))
    assert (loaded.threshold, loaded.quantile) == (detector.threshold, detector.quantile)
    assert OODDetector.load(tmp_path / "nowhere") is None
    mean = OODDetector.fit(train, targets, clusters(500, 1)[0], combine="mean")
    mean.save(tmp_path)
    loaded = OODDetector.load(tmp_path)
    assert loaded.combine == "mean"
    torch.testing.assert_close(loaded(probe), mean(probe))
    # a file written before the rule existed: the largest of the views, as it was fitted
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ood.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["detector"])
    del meta["combine"]
    save_file(load_file(str(tmp_path / "ood.safetensors")), str(tmp_path / "ood.safetensors"),
              metadata={"detector": json.dumps(meta)})
    del meta["normalised"]
    save_file(load_file(str(tmp_path / "ood.safetensors")), str(tmp_path / "ood.safetensors"),
              metadata={"detector": json.dumps(meta)})
    before = OODDetector.load(tmp_path)
    assert (before.combine, before.normalised) == ("max", False)


def test_a_checkpoint_carries_its_detector_and_explanations_say_how_far_they_are(tmp_path):
    from daam.explanation import Explanation
    from daam.model import DAAMClassifier, DAAMConfig, load_pretrained

    config = DAAMConfig(modality="text", labels=["a", "b"], num_layers=2, dim=DIM, layer_heads=2, position_heads=2,
                        layer_densities=2, position_densities=2, layer_names=["l0", "l1"])
    model = DAAMClassifier(config)
    model.save_pretrained(tmp_path / "plain")
    assert load_pretrained(tmp_path / "plain").ood is None  # a checkpoint from before: loads as it was
    train, targets = clusters(300, 0)
    model.ood = OODDetector.fit(train, targets, clusters(300, 1)[0])
    model.save_pretrained(tmp_path / "with")
    loaded = load_pretrained(tmp_path / "with")
    assert loaded.ood is not None and loaded.ood.threshold == model.ood.threshold
    # what explain() computes from a batch's intermediates
    features, mask = torch.randn(3, 2, 5, DIM), torch.ones(3, 5, dtype=torch.bool)
    from daam.ood import views_of

    _, inter = loaded(features, mask, return_intermediates=True)
    views = views_of(loaded, inter, features, mask)
    assert {k: tuple(v.shape) for k, v in views.items()} == {"head": (3, DIM), "mixed": (3, DIM), "encoder": (3, DIM),
                                                             "positions": (3, POSITIONS_PER_INPUT, DIM)}
    torch.testing.assert_close(views["encoder"], features[:, -1].mean(1))  # the last layer, over the positions
    torch.testing.assert_close(views["positions"][:, :5], features[:, 1])  # the first block's states, one by one
    assert views["positions"][:, 5:].isnan().all()  # a 5-position input has no more

    # the JSON written before the fields existed still reads; the fields survive a round trip
    stage = {"mode": "mixture", "offsets": [[0.0]], "scales": [[1.0]], "weights": [[1.0]], "grid": [0.0],
             "curve": [[1.0]], "components": [[[1.0]]]}
    old = {"modality": "text", "labels": ["a", "b"], "probabilities": [0.4, 0.6], "predicted_label": "b",
           "position_labels": ["x"], "position_weights": [[0.5]], "position_relevance": [0.1], "head_relevance": [[0.1]],
           "layer_importance": [[0.2]], "layer_names": ["l0"], "density": {"positions": stage},
           "z_values": {"positions": [[0.0]]}, "truncated": False, "truncation_note": "", "timings": {}}
    e = Explanation.from_dict(old)
    assert e.ood_score is None and e.out_of_distribution is None
    assert e.z_counts["positions"].tolist() == [[0] * 20 + [1] + [0] * 19]  # its z-values sample, counted
    flagged = Explanation.from_json(json.dumps(replace(e, ood_score=12.5, out_of_distribution=True).to_dict()))
    assert (flagged.ood_score, flagged.out_of_distribution) == (12.5, True)


def test_the_app_says_it_above_the_prediction_except_where_no_speech_was_found():
    from daam.explanation import AudioExtras, Explanation
    from ui.explain_tab import summary

    stage = {"mode": "mixture", "offsets": [[0.0]], "scales": [[1.0]], "weights": [[1.0]], "grid": [0.0],
             "curve": [[1.0]], "components": [[[1.0]]]}
    e = Explanation.from_dict({"modality": "text", "labels": ["fresh", "rotten"], "probabilities": [0.9, 0.1],
                               "predicted_label": "fresh", "position_labels": ["x"], "position_weights": [[0.5]],
                               "position_relevance": [0.1], "head_relevance": [[0.1]], "layer_importance": [[0.2]],
                               "layer_names": ["l0"], "density": {"positions": stage},
                               "z_counts": {"positions": [[0] * 40]}, "truncated": False, "truncation_note": "", "timings": {"encoder_ms": 1, "daam_ms": 1},
                               "ood_score": 3.0, "out_of_distribution": True})
    said = summary(e)
    assert said.index("unlike the training data") < said.index("**fresh**")
    assert "farther than 99% of its held-out items" in said
    assert "unlike the training data" not in summary(replace(e, out_of_distribution=False))
    assert "unlike the training data" not in summary(replace(e, out_of_distribution=None))
    clip = AudioExtras(log_mel=np.zeros((2, 2)), frame_times=np.zeros(2), position_times=np.zeros(1), duration_s=1.0,
                       speech_probability=0.01)
    silent = replace(e, modality="audio", labels=["A", "B"], predicted_label="A", extras=clip)
    assert "does not sound like speech" in summary(silent) and "unlike the training data" not in summary(silent)
    spoken = replace(silent, extras=replace(clip, speech_probability=0.99))
    assert "unlike the training data" in summary(spoken)


def test_the_positions_read_are_spread_over_each_input_whichever_side_it_is_padded_on():
    from daam.ood import spread_positions

    states = torch.arange(2 * 40, dtype=torch.float32).reshape(2, 40, 1)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, :31] = True  # padded on the right: positions 0..30
    mask[1, 9:] = True  # on the left: 9..39
    picked = spread_positions(states, mask, count=4)[..., 0]
    assert picked[0].tolist() == [0, 10, 20, 30] and picked[1].tolist() == [49, 59, 69, 79]
    short = spread_positions(states, mask & (torch.arange(40) < 11), count=4)[..., 0]  # 11 and 2 real positions
    assert short[0].tolist()[:4] == [0, 3, 7, 10] and short[1, :2].tolist() == [49, 50] and short[1, 2:].isnan().all()


def test_an_image_encoders_earlier_stages_are_a_view_of_their_own_where_their_channels_stay_few():
    from daam.model import DAAMClassifier, DAAMConfig
    from daam.ood import EARLY_MAX_CHANNELS, early_channels, views_of

    def image_config(channels: list[int]) -> DAAMConfig:
        return DAAMConfig(modality="image", labels=["a", "b"], num_layers=len(channels), dim=DIM, layer_heads=2,
                          position_heads=2, layer_densities=2, position_densities=2,
                          layer_names=[f"s{i}" for i in range(len(channels))],
                          adapter={"name": "stage_projection", "kwargs": {"channels": channels, "dim": DIM}})

    channels = [3, 4, 5, 6, 7]  # every stage but the last two: 3 + 4 + 5
    assert early_channels(image_config(channels)) == 12
    assert early_channels(image_config([3, 4, 5])) is None  # too few stages to leave any early ones apart
    assert early_channels(image_config([EARLY_MAX_CHANNELS, 1, 1, 1])) is None  # its covariance would be too large
    text = DAAMConfig(modality="text", labels=["a", "b"], num_layers=2, dim=DIM, layer_heads=2, position_heads=2,
                      layer_densities=2, position_densities=2, layer_names=["l0", "l1"])
    assert early_channels(text) is None

    model = DAAMClassifier(image_config(channels))
    features, mask = torch.randn(3, 4, sum(channels)), torch.ones(3, 4, dtype=torch.bool)  # (batch, cells, channels)
    _, inter = model(features, mask, return_intermediates=True)
    views = views_of(model, inter, features, mask)
    assert set(views) == {"head", "mixed", "encoder", "early"}
    torch.testing.assert_close(views["early"], features[..., :12].mean(1))  # those channels, over the cells


def test_the_classes_part_of_each_distance_is_worked_out_once_and_moves_with_the_detector():
    train, targets = clusters(300, 0)
    detector = OODDetector.fit(train, targets, clusters(300, 1)[0])
    probe = clusters(20, 5, shift=1.0)[0]
    for view, (means, precision, _) in detector.views.items():
        direct = ((probe[view][:, None, :] - means) @ precision * (probe[view][:, None, :] - means)).sum(-1).amin(-1)
        torch.testing.assert_close(OODDetector.distance(probe[view], means, precision, detector._terms[view]), direct,
                                   rtol=1e-4, atol=1e-3)
    before = detector(probe)
    torch.testing.assert_close(detector.to("cpu")(probe), before)
