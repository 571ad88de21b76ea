"""The deletion test: remove what an explanation ranks highest, re-run the model, and see the prediction fall.

An input is cut into units by its modality's case (daam.modalities: a sentence into its words; a picture into the
7x7 cells the model sees, a clip into the encoder's 20 ms frames: both exactly their positions). `deletion_curves` removes the top-scored fraction of units (and, for insertion, keeps
only them) and measures the predicted class's probability; a faithful ranking makes it fall fast. Used by
benchmarks/bench_faithfulness.py on held-out data and by the app's "Can I trust this?" panel on one input."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from .modalities import modality

FRACTIONS = (0.1, 0.2, 0.3, 0.5)
TRUST_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)  # ERASER's bins (DeYoung et al. 2020), as ferret uses them
LOG_ODDS_FRACTION = 0.2
RANDOMISED_PARTS = ("densities", "head")  # what the model-randomisation check redraws (Adebayo et al. 2018)
UNCHANGED_RHO = 0.5  # a method whose ranking keeps Spearman rho above this under randomisation does not pass
IG_STEPS = 16


def deletion_curves(case, rankings: dict[str, np.ndarray], target: int,
                    insertion: bool = True) -> dict[str, tuple[list[float], list[float]]]:
    """Per ranking (unit scores), the deletion drop and insertion recovery of the target's probability at each
    fraction of units: one batched pass of the model for every ranking and fraction together."""
    n = case.units
    keeps = [np.ones(n), np.zeros(n)]  # the full input, and the empty one insertion starts from
    for scores in rankings.values():
        order = np.argsort(-np.asarray(scores), kind="stable")
        for fraction in FRACTIONS:
            top = order[: max(1, round(fraction * n))]
            deleted, inserted = np.ones(n), np.zeros(n)
            deleted[top], inserted[top] = 0, 1
            keeps += [deleted, inserted] if insertion else [deleted]
    p = case.probabilities(np.stack(keeps))[:, target]
    full, empty, per = float(p[0]), float(p[1]), (2 if insertion else 1) * len(FRACTIONS)
    out = {}
    for r, name in enumerate(rankings):
        block = p[2 + r * per: 2 + (r + 1) * per]
        drops = [full - float(v) for v in (block[0::2] if insertion else block)]
        out[name] = (drops, [float(v) - empty for v in block[1::2]] if insertion else [])
    return out


def removal(modality_name: str) -> str:
    """What the modality's deletion test does to a removed unit, in words ("cells set to black")."""
    return modality(modality_name).resolve("case").removal


def unit_case(model, item):
    """The deletion-test view of an input, by its modality's case (daam.modalities: TextCase, ImageCase, ...)."""
    return modality(model.config.modality).resolve("case")(model, item)


def check(model, item, rng: np.random.Generator | None = None) -> dict:
    """For one input: the deletion drop at each fraction when removing the most relevant units, and random ones, and
    the trust measures (trust_measures) of both.

    Random is the mean of 3 random orders. One explanation, then one batched pass of the model for every ranking's
    deletion curve, and one per ranking for its trust measures."""
    rng = rng or np.random.default_rng(0)
    case = unit_case(model, item)
    explanation = model.explain(case.source)
    target = explanation.labels.index(explanation.predicted_label)
    rankings = {"relevance": case.per_unit(explanation.position_relevance)}
    rankings |= {f"random {i}": rng.random(case.units) for i in range(3)}
    curves = deletion_curves(case, rankings, target, insertion=False)
    randoms = np.mean([curves[f"random {i}"][0] for i in range(3)], 0)
    measured = {name: trust_measures(case, scores, target) for name, scores in rankings.items()}
    random_trust = {k: float(np.mean([measured[f"random {i}"][k] for i in range(3)])) for k in measured["relevance"]}
    return {"fractions": list(FRACTIONS), "relevance": curves["relevance"][0], "random": [float(v) for v in randoms],
            "trust": measured["relevance"], "random_trust": random_trust,
            "predicted_label": explanation.predicted_label, "units": case.units, "unit": case.unit}


def top_units(scores: np.ndarray, fraction: float) -> np.ndarray:
    """The ceil(fraction x units) best-scored units (at least one), best first; ties keep the units' order."""
    count = max(1, int(np.ceil(fraction * len(scores) - 1e-9)))
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:count]


def trust_measures(case, scores: np.ndarray, target: int) -> dict[str, float]:
    """The field's faithfulness measures of one ranking of an input's units, for the target class's probability p:

        comprehensiveness  AOPC of p(full) - p(the top units removed), over TRUST_FRACTIONS   (higher: more faithful)
        sufficiency        AOPC of p(full) - p(the top units alone), over TRUST_FRACTIONS     (lower: more faithful)
        log_odds           logit p(the top 20% removed) - logit p(full)                        (lower: more faithful)

    Removal and keeping are the modality's own (case.probabilities: words dropped, cells blacked out, frames
    silenced). One batched pass of the model."""
    n = case.units
    keeps = [np.ones(n)]
    for fraction in TRUST_FRACTIONS:
        top, removed, kept = top_units(scores, fraction), np.ones(n), np.zeros(n)
        removed[top], kept[top] = 0, 1
        keeps += [removed, kept]
    gone = np.ones(n)
    gone[top_units(scores, LOG_ODDS_FRACTION)] = 0
    keeps.append(gone)
    p = np.clip(case.probabilities(np.stack(keeps))[:, target], 1e-7, 1 - 1e-7)
    full, removed, kept = p[0], p[1:-1:2], p[2:-1:2]
    logit = lambda q: float(np.log(q) - np.log1p(-q))  # noqa: E731
    return {"comprehensiveness": float(np.mean(full - removed)), "sufficiency": float(np.mean(full - kept)),
            "log_odds": logit(p[-1]) - logit(full)}


def leave_one_out(case, target: int) -> np.ndarray:
    """Occlusion, one unit at a time: the drop of the target's probability when each unit alone is removed."""
    keeps = np.ones((case.units + 1, case.units)) - np.vstack([np.zeros(case.units), np.eye(case.units)])
    p = case.probabilities(keeps)[:, target]
    return p[0] - p[1:]


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two scorings of the same units: 1 for the same order, -1 for the reverse, ties counted
    as SciPy's kendalltau counts them; 0 where either scoring is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    upper = np.triu_indices(len(a), k=1)
    da, db = np.sign(a[:, None] - a[None, :])[upper], np.sign(b[:, None] - b[None, :])[upper]
    untied_a, untied_b = np.count_nonzero(da), np.count_nonzero(db)
    if not untied_a or not untied_b:
        return 0.0
    return float(np.sum(da * db) / np.sqrt(untied_a * untied_b))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two scorings of the same units: Pearson's correlation of their ranks (ties share the mean
    rank); 0 where either scoring is constant."""
    ranks = []
    for values in (np.asarray(a, dtype=float), np.asarray(b, dtype=float)):
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        ranks.append((np.cumsum(counts) - (counts - 1) / 2)[inverse])  # the mean rank of each run of ties
    ra, rb = ranks[0] - ranks[0].mean(), ranks[1] - ranks[1].mean()
    norm = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / norm) if norm else 0.0


@contextlib.contextmanager
def randomised(model, part: str, seed: int = 0) -> Iterator:
    """The model with one part redrawn at random, restored on exit: Adebayo et al.'s (2018) model-randomisation
    sanity check, whose point is that an explanation of a model that learned nothing should change.

        densities  every DAAM stage's offsets ~ U(-2, 2), scales ~ U(0.5, 1.5), mixture logits ~ N(0, 1)
        head       the classifier head's weight and bias, as nn.Linear initialises them"""
    from .densities import DensityHeads

    if part not in RANDOMISED_PARTS:
        raise ValueError(f"part must be one of {RANDOMISED_PARTS}, got {part!r}")
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    draw = lambda like, sample: sample(torch.empty(like.shape), generator).to(like)  # noqa: E731
    with torch.no_grad():
        if part == "densities":
            for heads in (m for m in model.pool.modules() if isinstance(m, DensityHeads)):
                heads.mean_offsets.copy_(draw(heads.mean_offsets, lambda t, g: t.uniform_(-2, 2, generator=g)))
                scale = draw(heads.raw_scales, lambda t, g: t.uniform_(0.5, 1.5, generator=g))
                heads.raw_scales.copy_(scale + torch.log(-torch.expm1(-scale)))  # inverse softplus
                heads.mixture_logits.copy_(draw(heads.mixture_logits, lambda t, g: t.normal_(generator=g)))
        else:
            bound = model.head.in_features ** -0.5
            for tensor in (model.head.weight, model.head.bias):
                tensor.copy_(draw(tensor, lambda t, g: t.uniform_(-bound, bound, generator=g)))
    try:
        yield model
    finally:
        model.load_state_dict(saved)
