"""Classification figures for metrics.json: accuracy, macro-F1, per class, per group, over seeds."""

from __future__ import annotations

import statistics

import numpy as np


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str],
                          groups: list[str] | None = None) -> dict:
    """Accuracy, macro-F1, per-class figures and the confusion matrix; with `groups` (one name per example,
    such as its voice), the accuracy within each group too: an average can hide one group the model fails."""
    k = len(labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class, f1s = {}, []
    for c, name in enumerate(labels):
        tp = confusion[c, c]
        precision = tp / max(confusion[:, c].sum(), 1)
        recall = tp / max(confusion[c].sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        f1s.append(f1)
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(confusion[c].sum())}
    report = {"accuracy": round(float((y_true == y_pred).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4),
              "per_class": per_class, "confusion_matrix": confusion.tolist(), "confusion_labels": labels}
    if groups is not None:
        correct, names = y_true == y_pred, np.asarray(groups)
        report["accuracy_per_group"] = {g: round(float(correct[names == g].mean()), 4) for g in dict.fromkeys(groups)}
    return report


def mean_sd(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "per_seed": [round(v, 4) for v in values]}


def head_movement(initial, final) -> dict:
    """How far each head's gate moved from its start, and how distinct the heads ended: for two DensityStages
    of one stage (same grid), the mean |g - g0| over the grid per head, and per pair of heads their mean |g_i - g_j|.

    A head that never left its start, or two heads with the same gate, show nothing a person can inspect."""
    moved = np.abs(final.curve - initial.curve).mean(1)  # (heads,)
    pairs = np.abs(final.curve[:, None] - final.curve[None]).mean(-1)  # (heads, heads)
    upper = pairs[np.triu_indices(len(pairs), k=1)]
    return {"moved": [round(float(m), 4) for m in moved], "median_moved": round(float(np.median(moved)), 4),
            "closest_pair": round(float(upper.min()), 4) if upper.size else None}
