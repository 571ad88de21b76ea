"""The deletion test: remove what an explanation ranks highest, re-run the model, and see the prediction fall.

An input is cut into units by its modality's case (daam.modalities: a sentence into its words; a picture into the
7x7 cells the model sees, a clip into the encoder's 20 ms frames: both exactly their positions). `deletion_curves` removes the top-scored fraction of units (and, for insertion, keeps
only them) and measures the predicted class's probability; a faithful ranking makes it fall fast. Used by
benchmarks/bench_faithfulness.py on held-out data and by the app's "Can I trust this?" panel on one input."""

from __future__ import annotations

import numpy as np

from .modalities import modality

FRACTIONS = (0.1, 0.2, 0.3, 0.5)
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


def unit_case(model, item):
    """The deletion-test view of an input, by its modality's case (daam.modalities: TextCase, ImageCase, ...)."""
    return modality(model.config.modality).resolve("case")(model, item)


def check(model, item, rng: np.random.Generator | None = None) -> dict:
    """For one input: the deletion drop at each fraction when removing the most relevant units, and random ones.

    Random is the mean of 3 random orders. One explanation, then one batched pass of the model for every ranking."""
    rng = rng or np.random.default_rng(0)
    case = unit_case(model, item)
    explanation = model.explain(case.source)
    target = explanation.labels.index(explanation.predicted_label)
    rankings = {"relevance": case.per_unit(explanation.position_relevance)}
    rankings |= {f"random {i}": rng.random(case.units) for i in range(3)}
    curves = deletion_curves(case, rankings, target, insertion=False)
    randoms = np.mean([curves[f"random {i}"][0] for i in range(3)], 0)
    return {"fractions": list(FRACTIONS), "relevance": curves["relevance"][0], "random": [float(v) for v in randoms],
            "predicted_label": explanation.predicted_label, "units": case.units, "unit": case.unit}
