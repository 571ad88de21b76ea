"""Relevance: one signed value per position that says what drove the prediction, checked by deletion."""

import dataclasses

import numpy as np
import pytest
import torch

from daam import DAAMClassifier, DAAMConfig, Explanation
from daam.modalities import MODALITIES
from daam.pools import masked_mean
from daam.features import FeatureCache
from daam.train import TrainSettings, fit

POSITIONS, LAYERS, DIM = 12, 2, 16


def evidence_task(n: int, seed: int, marked: bool = False, decoys: bool = False) -> tuple[FeatureCache, list[list[int]]]:
    """Noise at every position, plus the class's direction at two random positions: the evidence. marked: the
    evidence positions also share a class-free marker, so that one query can find them whatever the class.
    decoys: two other positions carry the direction with a random sign, unmarked, so that the mean over positions
    is a poor guide and a mechanism must find the marked positions to tell the class."""
    g = torch.Generator().manual_seed(seed)
    direction, marker = torch.zeros(DIM), torch.zeros(DIM)
    direction[:4], marker[4:8] = 1.5, 1.5 * marked
    items, labels, where = [], [], []
    for _ in range(n):
        label = int(torch.randint(2, (1,), generator=g))
        x = torch.randn(POSITIONS, LAYERS, DIM, generator=g)  # positions first, as FeatureCache stores them
        chosen = torch.randperm(POSITIONS, generator=g)[:4].tolist()
        evidence = chosen[:2]
        x[evidence] += (1 if label else -1) * direction + marker
        if decoys:
            x[chosen[2:]] += (2 * torch.randint(2, (2, 1, 1), generator=g) - 1) * direction
        items.append(x.half())
        labels.append(label)
        where.append(evidence)
    return FeatureCache(items, torch.tensor(labels), position_axis=2), where


class ReadyFeatures(torch.nn.Module):
    """An encoder that hands over ready features (FeatureCache items), so explain() runs on fixtures."""

    modality = "text"

    def forward(self, items):
        from daam.encoders import Encoded

        cache = FeatureCache(items, torch.zeros(len(items), dtype=torch.long), position_axis=2)
        features, mask, _ = cache.batch(list(range(len(items))))
        return Encoded(features, mask, [[f"p{i}" for i in range(len(x))] for x in items], [""] * len(items))


def train_on_evidence(epochs: int, desc: str, marked: bool = False, decoys: bool = False, **config):
    """A small classifier trained on 1000 evidence-task items (200 for validation): (model, its start, fit info)."""
    cache, _ = evidence_task(1200, seed=0, marked=marked, decoys=decoys)
    torch.manual_seed(0)
    model = DAAMClassifier(DAAMConfig("text", ["minus", "plus"], num_layers=LAYERS, dim=DIM, layer_names=["a", "b"],
                                      **config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = {"train": list(range(1000)), "val": list(range(1000, 1200)), "test": []}
    info = fit(model, cache, split, TrainSettings(epochs=epochs, batch_size=32), seed=0, desc=desc)
    return model.eval(), before, info


@pytest.fixture(scope="module")
def trained():
    return train_on_evidence(3, "fixture")


def test_relevance_is_the_exact_split_of_the_first_order_term(trained):
    model, _, _ = trained
    cache, _ = evidence_task(4, seed=1)
    features, mask, _ = cache.batch([0, 1, 2, 3])
    mask[1, 9:] = False
    logits, inter = model(features, mask, return_intermediates=True)
    relevance = model.relevance(logits, inter, mask)  # (batch, heads, positions)
    gated = (inter.mixed * inter.positions.gate).detach().requires_grad_(True)
    log_p = model.head(model.norm(masked_mean(gated, mask[:, :, None], 1))).log_softmax(-1)
    log_p.gather(1, log_p.argmax(-1, keepdim=True)).sum().backward()
    torch.testing.assert_close(relevance.sum(1), (gated * gated.grad).sum(-1).detach(), rtol=1e-4, atol=1e-6)
    assert (relevance[1, :, 9:] == 0).all()  # padding supports nothing


def test_density_parameters_receive_gradient_and_move(trained):
    model, before, info = trained
    assert info["val_accuracy"] > 0.9
    for name in ("pool.position_attention.mean_offsets", "pool.position_attention.raw_scales", "pool.layer_attention.mean_offsets"):
        assert (model.state_dict()[name] - before[name]).abs().max() > 1e-2, name


def drop_after_deleting(model, features, mask, scores: torch.Tensor, fraction: float) -> np.ndarray:
    """Drop of the predicted class's probability when the top-scored `fraction` of positions are deleted."""
    with torch.no_grad():
        probs = model(features, mask).softmax(-1)
        predicted = probs.argmax(-1)
        k = max(1, round(fraction * mask.shape[1]))
        top = scores.masked_fill(~mask, -np.inf).topk(k, dim=1).indices
        kept = mask.clone()
        kept.scatter_(1, top, False)
        after = model(features, kept).softmax(-1)
    return (probs.gather(1, predicted[:, None]) - after.gather(1, predicted[:, None])).squeeze(1).numpy()


def test_deleting_the_most_relevant_positions_lowers_the_prediction_more_than_random_ones(trained):
    model, _, _ = trained
    cache, where = evidence_task(200, seed=2)
    features, mask, _ = cache.batch(list(range(200)))
    with torch.no_grad():
        logits, inter = model(features, mask, return_intermediates=True)
        relevance = model.relevance(logits, inter, mask).sum(1)
    random_scores = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
    by_relevance = drop_after_deleting(model, features, mask, relevance, 0.2).mean()
    by_random = drop_after_deleting(model, features, mask, random_scores, 0.2).mean()
    assert by_relevance > 2 * by_random and by_relevance > 0.2, (by_relevance, by_random)
    top_two = relevance.topk(2, dim=1).indices.tolist()
    hits = np.mean([len(set(t) & set(w)) / 2 for t, w in zip(top_two, where)])
    assert hits > 0.6  # the top two positions are mostly where the evidence was put (chance: 2 of 12)


def test_explanations_carry_relevance_per_position_and_head_through_json(trained):
    model, _, _ = trained
    model.set_encoder(ReadyFeatures())
    cache, _ = evidence_task(2, seed=3)
    e = model.explain_batch([cache.items[0], cache.items[1][:7]])[1]
    assert e.position_relevance.shape == (7,) and e.head_relevance.shape == (4, 7)
    np.testing.assert_allclose(e.head_relevance.sum(0), e.position_relevance, rtol=1e-5, atol=1e-7)
    back = Explanation.from_json(e.to_json())
    np.testing.assert_allclose(back.position_relevance, e.position_relevance, atol=1e-6)
    assert back.head_relevance.shape == (4, 7)


def test_head_movement_measures_distance_from_start_and_between_heads():
    from daam.explanation import DensityStage
    from daam.metrics import head_movement

    grid = np.linspace(-4, 4, 9)
    flat = np.full((3, 9), 0.5)
    moved = flat.copy()
    moved[0] += 0.2
    moved[1] -= 0.1
    stage = lambda curve: DensityStage("mixture", *(np.zeros((3, 1)),) * 3, grid, curve, curve[:, None])  # noqa: E731
    m = head_movement(stage(flat), stage(moved))
    assert m["moved"] == [0.2, 0.1, 0.0] and m["median_moved"] == 0.1
    assert m["closest_pair"] == 0.1  # head 1 and head 2 differ by 0.1 everywhere


def test_the_card_reports_head_movement_and_faithfulness(tmp_path):
    import json
    from pathlib import Path

    from daam.model_card import write_card

    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "image"
    metrics = json.loads((shipped / "metrics.json").read_text())
    metrics["head_movement"] = {"positions": {"moved": [0.3, 0.2], "median_moved": 0.25, "closest_pair": 0.01}}
    method = {"deletion": [0.1, 0.42, 0.5, 0.6], "deletion_aopc": 0.4, "insertion": [0.1] * 4, "insertion_aopc": 0.1,
              "ms": 12.0}
    metrics["faithfulness"] = {"command": "python benchmarks/bench_faithfulness.py image --items 9", "items": 9,
                               "unit": "cell", "methods": {"relevance": method}}
    write_card(tmp_path, metrics, DAAMClassifier.from_pretrained(shipped).config)
    card = (tmp_path / "README.md").read_text()
    assert "| positions | 0.300, 0.200 | 0.250 | 0.010 |" in card and "**not met**" in card
    assert "| relevance | 0.420 | 0.400 | 0.100 | 12 |" in card
    assert "The field's measures" not in card  # a run from before them: no empty table
    measures = {"comprehensiveness": [0.31, 0.15], "sufficiency": [-0.05, 0.1], "log_odds": [-2.4, 1.0],
                "kendall_tau_occlusion": [0.48, 0.2]}
    metrics["faithfulness"] |= {"replacement": "cells set to black", "trust": {"relevance": measures, "raw gate": measures,
                                                                               "random": measures},
                                "randomisation": {"relevance": {"densities": 0.2, "head": 0.1},
                                                  "raw gate": {"densities": 0.3, "head": 1.0}}}
    metrics["ood"] = {"method": "Mahalanobis distances", "quantile": 0.99, "threshold": 1.07,
                      "fitted_on": {"train": 4000, "val": 2000}, "test_items": 4000, "test_flagged": 0.012,
                      "detection": {"photographs": {"items": 40, "flagged": 0.95}},
                      "detection_command": "python benchmarks/bench_ood.py image"}
    write_card(tmp_path, metrics, DAAMClassifier.from_pretrained(shipped).config)
    card = (tmp_path / "README.md").read_text()
    assert "The field's measures, cells set to black" in card
    assert "| relevance | 0.310 ± 0.150 | -0.050 ± 0.100 | -2.400 ± 1.000 | 0.480 ± 0.200 | 0.20 / 0.10 (passes) |" in card
    assert "| raw gate |" in card and "0.30 / 1.00 (fails)" in card and "| random |" in card and "| n/a |" in card
    assert "farther than 99% of 2,000 validation items" in card and "of\n4,000 test items, 1.2% are flagged" in card
    assert "| photographs | 40 | 95.0% | 0.0% |" in card


def test_the_overlap_penalty_pushes_close_heads_apart_and_ignores_distinct_ones():
    from daam.attention import MultiHeadDensityAdaptiveAttention
    from daam.attention import OVERLAP_GRID, head_overlap

    close = MultiHeadDensityAdaptiveAttention(1, 2, 3)
    with torch.no_grad():
        close.mean_offsets[1] += 0.05  # nearly the same head twice (exact twins get no gradient: symmetry)

    def distance():
        curves = close.gate_curves(OVERLAP_GRID)
        return (curves[0] - curves[1]).abs().mean().item()

    before = distance()
    penalty = head_overlap(close)
    assert penalty.item() == pytest.approx(0.1 - before, rel=1e-4)
    penalty.backward()
    with torch.no_grad():
        for p in close.parameters():
            p -= 1.0 * p.grad
    assert distance() > before + 0.01
    apart = MultiHeadDensityAdaptiveAttention(1, 2, 1)
    apart.set_density_parameters([[-2.0], [2.0]], [[0.5], [0.5]], [[1.0], [1.0]])
    assert head_overlap(apart) == 0


def test_the_deletion_check_of_one_sentence_beats_random_on_the_shipped_checkpoint():
    from pathlib import Path

    from daam import load_pretrained
    from daam.faithfulness import check

    model = load_pretrained(Path(__file__).resolve().parents[1] / "checkpoints" / "text")
    result = check(model, "The jokes fall flat, the plot makes no sense and the ending drags on forever.")
    assert result["predicted_label"] == "rotten" and result["units"] == 15
    assert len(result["relevance"]) == len(result["random"]) == len(result["fractions"]) == 4
    at = result["fractions"].index(0.2)
    assert result["relevance"][at] > result["random"][at] + 0.1


@pytest.mark.parametrize("example", ["image_fmnist_ankle_boot.png", "image_fmnist_shirt.png"])
def test_image_relevance_goes_through_the_encoder_and_beats_random_deletion(example):
    from pathlib import Path

    from daam import load_pretrained
    from daam.faithfulness import check

    root = Path(__file__).resolve().parents[1]
    model = load_pretrained(root / "checkpoints" / "image")
    calls = []
    features = model.encoder.features
    model.encoder.features = lambda seen: calls.append(seen.shape) or features(seen)
    e = model.explain(str(root / "examples" / example))
    assert len(calls) == 1  # the relevance's backward goes through the forward that made the features
    del model.encoder.features
    assert e.position_relevance.shape == (49,) and e.head_relevance.shape == (model.config.position_heads, 49)
    assert (e.position_relevance[e.extras.image.reshape(7, 32, 7, 32).max((1, 3)).ravel() == 0] == 0).all()  # black cells: nothing to remove
    result = check(model, str(root / "examples" / example))
    assert result["unit"] == "cells" and result["units"] == 49
    at = result["fractions"].index(0.2)
    assert result["relevance"][at] > result["random"][at] + 0.05


def test_the_deletion_test_silences_frames_of_a_clip():
    from pathlib import Path

    from daam import load_pretrained
    from daam.audio import prepare_audio
    from daam.faithfulness import check, unit_case

    root = Path(__file__).resolve().parents[1]
    model = load_pretrained(root / "checkpoints" / "audio")
    clip = root / "examples" / "audio_espeak_q.wav"
    case = unit_case(model, str(clip))
    assert case.unit == "frames" and case.units == (prepare_audio(clip).log_mel.shape[1] + 1) // 2
    every, none = np.ones((1, case.units)), np.zeros((1, case.units))
    assert case.probabilities(every)[0].argmax() == model.config.labels.index("Q")
    assert case.probabilities(none)[0].max() < 0.9  # silence is not a confident Q
    result = check(model, str(clip))
    # Over the fractions (AOPC): one clip's curve is far from smooth, a frame's neighbours hear it through attention
    assert np.mean(result["relevance"]) > np.mean(result["random"]) + 0.2


@pytest.mark.parametrize("mechanism", ["daam", "daam_score"])
@pytest.mark.parametrize("pooling", ["mean", "gate"])
def test_pool_shares_make_the_pooled_vector_and_relevance_splits_it_for_either_pooling(pooling, mechanism):
    torch.manual_seed(0)
    config = DAAMConfig("text", ["minus", "plus"], num_layers=LAYERS, dim=DIM, layer_names=["a", "b"], pooling=pooling,
                        position_mechanism=mechanism)
    model = DAAMClassifier(config).eval()
    cache, _ = evidence_task(3, seed=2)
    features, mask, _ = cache.batch([0, 1, 2])
    mask[1, 8:] = False
    logits, inter = model(features, mask, return_intermediates=True)
    shares = model.pool.pool_shares(inter.positions.gate, mask)
    assert (shares[1, 8:] == 0).all()  # padding has no share
    if pooling == "gate":  # the gates are normalised pooling weights
        torch.testing.assert_close(shares.sum(1), torch.ones(3, DIM))
    added = (shares * inter.mixed).detach().requires_grad_(True)
    torch.testing.assert_close(added.sum(1), inter.pooled)
    log_p = model.head(model.norm(added.sum(1))).log_softmax(-1)
    log_p.gather(1, log_p.argmax(-1, keepdim=True)).sum().backward()
    relevance = model.relevance(logits, inter, mask)
    credited = added.detach()
    if pooling == "gate":  # normalised shares: a position is credited against an even split of the pool
        real = mask[:, :, None].float()
        uniform = (inter.mixed * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)
        credited = shares * (inter.mixed - uniform)
        torch.testing.assert_close(relevance.sum((1, 2)), ((inter.pooled - uniform[:, 0]) * added.grad[:, 0]).sum(-1).detach(),
                                   rtol=1e-4, atol=1e-6)  # in all: the gate's choices against pooling alike
    torch.testing.assert_close(relevance.sum(1), (credited * added.grad).sum(-1).detach(), rtol=1e-4, atol=1e-6)


def test_under_gate_pooling_relevance_is_the_first_order_effect_of_removing_a_position(scored):
    """Removing position p from a normalised pool gives its weight to the others: pooled_without_p = (pooled -
    share_p * x_p) / (1 - share_p), per channel. Relevance ranks the positions by the log-probability lost that way."""
    model, _, _ = scored
    cache, _ = evidence_task(20, seed=5, marked=True, decoys=True)
    features, mask, _ = cache.batch(list(range(20)))
    with torch.no_grad():
        logits, inter = model(features, mask, return_intermediates=True)
        relevance = model.relevance(logits, inter, mask).sum(1)  # (20, positions)
        shares = model.pool.pool_shares(inter.positions.gate, mask)  # (20, positions, dim)
        without = (inter.pooled[:, None] - shares * inter.mixed) / (1 - shares)  # (20, positions, dim)
        log_p = model.head(model.norm(without)).log_softmax(-1)
        predicted = logits.argmax(-1)
        lost = logits.log_softmax(-1).gather(1, predicted[:, None]) - log_p.gather(2, predicted[:, None, None].expand(-1, POSITIONS, 1))[..., 0]
    ranks = lambda values: values.argsort(-1).argsort(-1).double()  # noqa: E731
    rank_correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(ranks(relevance), ranks(lost))]
    assert np.mean(rank_correlation) > 0.9  # it orders the positions as their removal does


@pytest.fixture(scope="module")
def scored():
    """A classifier whose position stage is DAAM over a learned score per head, its gates the pooling weights,
    trained where only the marked evidence tells the class, past decoys that say the opposite."""
    return train_on_evidence(6, "scored fixture", marked=True, decoys=True, position_mechanism="daam_score",
                             pooling="gate", offset_spread=1.5)


def test_a_scored_stage_gates_each_position_once_per_head_and_pools_by_its_gates(scored):
    model, before, info = scored
    assert info["val_accuracy"] > 0.9
    for name in ("pool.position_attention.mean_offsets", "pool.position_attention.raw_scales", "pool.position_attention.score.weight"):
        assert (model.state_dict()[name] - before[name]).abs().max() > 1e-2, name
    cache, _ = evidence_task(3, seed=4, marked=True, decoys=True)
    features, mask, _ = cache.batch([0, 1, 2])
    mask[2, 6:] = False
    logits, inter = model(features, mask, return_intermediates=True)
    heads = model.config.position_heads
    assert inter.positions.gate.shape == inter.positions.z.shape == (3, POSITIONS, heads)
    assert (inter.positions.z[2, 6:] == 0).all()  # the scores' statistics skip padding
    shares = model.pool.pool_shares(inter.positions.gate, mask)  # (3, positions, dim)
    torch.testing.assert_close(shares.sum(1), torch.ones(3, DIM))
    assert (shares[2, 6:] == 0).all()
    channels_of_head = torch.arange(DIM) // (DIM // heads)
    torch.testing.assert_close(model.pool.channel_gate(inter.positions.gate), inter.positions.gate[..., channels_of_head])
    torch.testing.assert_close((shares * inter.mixed).sum(1), inter.pooled)


def test_a_scored_stages_raw_gates_point_at_the_evidence(scored):
    """The goal the channel-wise stage missed: deleting the positions its heads let through most lowers the
    prediction more than deleting random ones."""
    model, _, _ = scored
    cache, _ = evidence_task(200, seed=2, marked=True, decoys=True)
    features, mask, _ = cache.batch(list(range(200)))
    with torch.no_grad():
        _, inter = model(features, mask, return_intermediates=True)
    gate = inter.positions.gate.mean(-1)  # (batch, positions): the mean over heads, as the benchmark ranks
    random_scores = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
    by_gate = drop_after_deleting(model, features, mask, gate, 0.2).mean()
    by_random = drop_after_deleting(model, features, mask, random_scores, 0.2).mean()
    assert by_gate > 2 * by_random, (by_gate, by_random)


def test_a_scored_stages_explanation_has_one_gate_and_one_z_per_position_and_head(scored):
    model, _, _ = scored
    model.set_encoder(ReadyFeatures())
    cache, _ = evidence_task(2, seed=6, marked=True, decoys=True)
    e = model.explain_batch([cache.items[0], cache.items[1][:7]])[1]
    heads = model.config.position_heads
    assert e.position_weights.shape == e.head_relevance.shape == (heads, 7)
    assert e.z_counts["positions"].sum(1).tolist() == [7] * heads  # one standardised score per position
    np.testing.assert_allclose(e.head_relevance.sum(0), e.position_relevance, rtol=1e-5, atol=1e-7)
    assert e.density["positions"].standardises == "score" and e.density["layers"].standardises == "input"
    back = Explanation.from_json(e.to_json())
    assert back.density["positions"].standardises == "score"
    np.testing.assert_allclose(back.position_weights, e.position_weights, atol=1e-6)


class SilencedFeatures(ReadyFeatures):
    """ReadyFeatures with a reference: every position removed becomes zeros, as a silenced frame becomes silence."""

    def reference_features(self, encoded):
        return torch.zeros_like(encoded.features)


def test_relevance_against_a_reference_orders_positions_as_replacing_them_by_it_does(scored):
    model, _, _ = scored
    cache, _ = evidence_task(20, seed=6, marked=True, decoys=True)
    features, mask, _ = cache.batch(list(range(20)))
    with torch.no_grad():
        logits, inter = model(features, mask, return_intermediates=True)
        heads, positions = model.relevance_against(logits, inter, mask, torch.zeros_like(features))
        unchanged_heads, unchanged = model.relevance_against(logits, inter, mask, features)
        predicted = logits.argmax(-1)
        log_p = logits.log_softmax(-1).gather(1, predicted[:, None])[:, 0]
        lost = []  # the model itself, run again with each position replaced by the reference (its gates move too)
        for p in range(POSITIONS):
            replaced = features.clone()
            replaced[:, :, p] = 0
            lost.append(log_p - model(replaced, mask).log_softmax(-1).gather(1, predicted[:, None])[:, 0])
    assert heads.shape == (20, model.pool.position_attention.num_heads, POSITIONS) and positions.shape == (20, POSITIONS)
    assert unchanged_heads.abs().max() < 1e-5 and unchanged.abs().max() < 1e-5  # like its reference: adds nothing
    ranks = lambda values: values.argsort(-1).argsort(-1).double()  # noqa: E731
    rank_correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(ranks(positions), ranks(torch.stack(lost, 1)))]
    assert np.mean(rank_correlation) > 0.8, np.mean(rank_correlation)


def test_a_modality_naming_reference_relevance_gets_it_against_its_encoders_reference(scored, monkeypatch):
    model, _, _ = scored
    monkeypatch.setitem(MODALITIES, "text", dataclasses.replace(MODALITIES["text"], relevance="reference"))
    with pytest.raises(ValueError, match="reference_features"):
        model.set_encoder(ReadyFeatures())  # the method names what it needs of the encoder, which this one lacks
    model.set_encoder(SilencedFeatures())
    try:
        cache, _ = evidence_task(2, seed=7, marked=True)
        e = model.explain_batch([cache.items[0], cache.items[1][:7]])[1]
        features, mask, _ = FeatureCache([cache.items[1][:7]], torch.zeros(1, dtype=torch.long), 2).batch([0])
        with torch.no_grad():
            logits, inter = model(features, mask, return_intermediates=True)
            heads, positions = model.relevance_against(logits, inter, mask, torch.zeros_like(features))
        np.testing.assert_allclose(e.position_relevance, positions[0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e.head_relevance, heads[0].numpy(), rtol=1e-5, atol=1e-6)
        back = Explanation.from_json(e.to_json())
        np.testing.assert_allclose(back.position_relevance, e.position_relevance, atol=1e-6)
        assert e.relevance_method == back.relevance_method == "reference"
    finally:
        monkeypatch.undo()
        model.set_encoder(ReadyFeatures())  # as the other tests of this fixture expect


def test_explanations_record_their_modalitys_relevance_method_and_an_unknown_one_is_refused(scored, monkeypatch):
    model, _, _ = scored
    cache, _ = evidence_task(1, seed=8, marked=True)
    e = model.explain(cache.items[0])
    assert e.relevance_method == MODALITIES["text"].relevance == "pool"
    np.testing.assert_allclose(e.head_relevance.sum(0), e.position_relevance, rtol=1e-5, atol=1e-7)  # pool: heads sum
    monkeypatch.setitem(MODALITIES, "text", dataclasses.replace(MODALITIES["text"], relevance="saliency"))
    with pytest.raises(ValueError, match="unknown relevance method 'saliency'; known: \\['encoder_gradient', 'pool', "
                                         "'reference'\\]"):
        model.explain(cache.items[0])


def test_daam_gives_position_weights_as_the_mechanisms_do(scored):
    model, _, _ = scored
    cache, _ = evidence_task(8, seed=9, marked=True)
    features, mask, _ = cache.batch(list(range(8)))
    mask[:3, 9:] = False
    with torch.no_grad():
        logits, weights = model.eval()(features, mask, return_weights=True)
        same, inter, again = model(features, mask, return_intermediates=True, return_weights=True)
    torch.testing.assert_close(weights.sum(1), torch.ones(8))
    assert (weights[:3, 9:] == 0).all() and (weights >= 0).all()
    torch.testing.assert_close(same, logits)
    torch.testing.assert_close(again, weights)
    gate = inter.positions.gate.mean(-1) * mask  # the raw gate, normalised: what the position stage lets through
    torch.testing.assert_close(weights, gate / gate.sum(1, keepdim=True))


class AdditiveCase:
    """A model whose target log-odds are the sum of the kept units' weights: every measure's answer is known."""

    unit = "units"

    def __init__(self, weights) -> None:
        self.weights, self.units = np.asarray(weights, dtype=float), len(weights)

    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(np.asarray(keeps) @ self.weights)))
        return np.stack([1 - p, p], 1)


def test_trust_measures_rank_the_true_ranking_above_a_random_one_and_its_reverse():
    from daam.faithfulness import kendall_tau, leave_one_out, top_units, trust_measures

    rng = np.random.default_rng(0)
    case = AdditiveCase(rng.normal(0.1, 1.0, 40))
    truth, reverse, random_order = case.weights, -case.weights, rng.random(40)
    good, bad, chance = (trust_measures(case, s, target=1) for s in (truth, reverse, random_order))
    assert good["comprehensiveness"] > chance["comprehensiveness"] > bad["comprehensiveness"]
    assert good["sufficiency"] < chance["sufficiency"] < bad["sufficiency"]
    assert good["log_odds"] < 0 < bad["log_odds"]
    # Removing the top 20% of an additive model lowers its log-odds by exactly their weights' sum.
    assert good["log_odds"] == pytest.approx(-truth[top_units(truth, 0.2)].sum(), rel=1e-6)
    occlusion = leave_one_out(case, target=1)
    assert kendall_tau(truth, occlusion) == pytest.approx(1.0) and kendall_tau(reverse, occlusion) == pytest.approx(-1.0)
    assert list(top_units(np.array([0.1, 0.9, 0.5]), 0.01)) == [1]  # 1% of three units is still one unit


def test_kendall_tau_agrees_with_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    from daam.faithfulness import kendall_tau

    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.integers(0, 4, 12), rng.normal(size=12).round(1)
        assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    assert kendall_tau(np.ones(5), np.arange(5)) == 0.0
