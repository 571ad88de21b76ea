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
