"""Model cards (README.md in a checkpoint directory), written from metrics.json by the training run."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .attention import OVERLAP_MARGIN
from .faithfulness import UNCHANGED_RHO
from .modalities import modality, resolve
from .model import DAAMConfig

EXPLANATION_CAVEAT = ("The relevance is an account of what removing a part would do: to first order at the pooling "
                      "stage for tokens, exactly at the pooling stage against the clip silenced for 20 ms frames, "
                      "through the encoder to the pixels for images (gradient x input per cell); the faithfulness "
                      "section (when measured) says how well it, and the raw gates, predict what deleting an input's "
                      "parts does.")
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


def training_sentence(metrics: dict) -> str:
    """The optimiser settings that shape the densities, when the run recorded them."""
    t = metrics.get("train_settings", {})
    if not t.get("density_lr"):
        return ""
    penalty = (f", plus {t['head_diversity']} x a penalty on pairs of heads whose gates differ by less than "
               f"{OVERLAP_MARGIN}" if t.get("head_diversity") else "")
    return (f"Training: AdamW for {t['epochs']} epochs, one-cycle schedule, peak rate {t['lr']} with weight decay "
            f"{t['weight_decay']}; the density parameters (offsets, scales, mixture weights) at peak rate "
            f"{t['density_lr']} without weight decay, so they leave their start{penalty}. ")


def data_time_sentence(metrics: dict) -> str:
    """How long making the data took before training, when the run recorded it."""
    seconds = metrics.get("data_time_s")
    return f", after {seconds} s making the data (reading it, or synthesising the voices)" if seconds else ""


MOVED_GOAL, DISTINCT_GOAL = 0.15, 0.05  # median mean |g - g0| per stage; smallest mean |g_i - g_j| between two heads


def heads_section(metrics: dict) -> str:
    """How far the learned densities moved from their start, and how distinct the heads are."""
    movement = metrics.get("head_movement")
    if not movement:
        return ""
    rows = "\n".join(f"| {stage} | {', '.join(f'{m:.3f}' for m in s['moved'])} | {s['median_moved']:.3f} | "
                     f"{s['closest_pair']:.3f} |" for stage, s in movement.items())
    met = all(s["median_moved"] >= MOVED_GOAL and s["closest_pair"] >= DISTINCT_GOAL for s in movement.values())
    return f"""
## What the heads learned
Mean |g(z) - g0(z)| over z in [-4, 4] between each head's learned gate and its initial one, and the smallest
mean difference between two heads of a stage (goals: median movement >= {MOVED_GOAL}, no two heads within
{DISTINCT_GOAL}; {'met' if met else '**not met**'}):

| stage | movement per head | median | closest two heads |
| --- | --- | --- | --- |
{rows}
"""


def faithfulness_section(metrics: dict) -> str:
    """Deletion figures of benchmarks/bench_faithfulness.py on held-out data, when it has been run."""
    f = metrics.get("faithfulness")
    if not f:
        return ""
    rows = "\n".join(f"| {name} | {r['deletion'][1]:.3f} | {r['deletion_aopc']:.3f} | {r['insertion_aopc']:.3f} | "
                     f"{r['ms']:.0f} |" for name, r in f["methods"].items())
    return f"""
## Are the explanations faithful?
`{f['command']}` on {f['items']} held-out test inputs: delete the top-scored {f['unit']}s, re-run, and measure the
drop of the predicted class's probability (insertion: keep only them). Higher is more faithful.

| method | deletion drop at 20% | deletion AOPC (10/20/30/50%) | insertion AOPC | ms per explanation |
| --- | --- | --- | --- | --- |
{rows}
{trust_table(f)}"""


def trust_table(f: dict) -> str:
    """The field's measures and the randomisation check, when the run recorded them (mean ± sd over the inputs)."""
    if "trust" not in f:
        return ""
    rows = []
    for name, m in f["trust"].items():
        rho = f["randomisation"].get(name)
        check = (f"{rho['densities']:.2f} / {rho['head']:.2f} ({'passes' if max(rho.values()) <= UNCHANGED_RHO else 'fails'})"
                 if rho else "n/a")
        rows.append(f"| {name} | " + " | ".join(f"{m[k][0]:.3f} ± {m[k][1]:.3f}" for k in
                                              ("comprehensiveness", "sufficiency", "log_odds", "kendall_tau_occlusion"))
                    + f" | {check} |")
    return f"""
The field's measures, {f['replacement']}: comprehensiveness and sufficiency as AOPC over removing / keeping the top
1, 5, 10, 20 and 50% (ERASER), log-odds at 20% removed, Kendall tau with leave-one-out occlusion; and Adebayo et
al.'s model-randomisation check: Spearman rho of the ranking with the density parameters / the classifier head
redrawn at random (a method passes at {UNCHANGED_RHO} or less: it depends on what the model learned).

| method | comprehensiveness ↑ | sufficiency ↓ | log-odds ↓ | tau with occlusion ↑ | rho randomised densities / head ↓ |
| --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n"


def position_stage(config: DAAMConfig) -> str:
    """The position stage and pooling of a checkpoint, in words."""
    heads = f"{config.position_heads} heads, {config.position_densities} densities each, mode `{config.mode}`"
    if config.position_mechanism == "daam_score":
        stage = (f"DAAM across positions over a learned score ({heads}: each head scores every position by its own "
                 f"linear projection and gates the scores, standardised over the input's positions, by its density)")
    else:
        stage = f"DAAM across positions ({heads}, heads over channel groups: every channel gated by its own z-score)"
    if config.pooling == "gate":
        return f"{stage}, each head's gates normalised over positions as the pooling weights of its channels"
    return f"{stage}, masked mean pooling of the gated positions"


def ood_section(metrics: dict) -> str:
    """The out-of-distribution detector (daam.ood) and how it did, when it has been fitted."""
    o = metrics.get("ood")
    if not o:
        return ""
    rows = "".join(f"\n| {name} | {d['items']} | {d['flagged']:.1%} | {d.get('refused', 0):.1%} |"
                   for name, d in o.get("detection", {}).items())
    detected = (f"""
Detection on out-of-distribution sets, never used to fit the detector or set its threshold
(`{o['detection_command']}`):

| set | items | flagged | refused as unreadable (no prediction) |
| --- | --- | --- | --- |{rows}
""" if rows else "")
    return f"""
## Is this input like the training data?
`daam.ood`: {o['method']}; fitted on {o['fitted_on']['train']:,} training items. An input is flagged when it lies
farther than {o['quantile']:.0%} of {o['fitted_on']['val']:,} validation items (threshold {o['threshold']}); of
{o['test_items']:,} test items, {o['test_flagged']:.1%} are flagged. The app says so above the prediction, and the
Explanation carries `ood_score` and `out_of_distribution`.
{detected}"""


def write_card(out: Path, metrics: dict, config: DAAMConfig) -> None:
    """README.md for a checkpoint directory, every figure taken from metrics.json."""
    card = metrics["data"].get("card") or modality(config.modality).card  # a user's data names its own card
    sec = resolve(card)(metrics, config)
    daam = metrics["results"]["daam"]
    best_baseline = max((r["test_accuracy"]["mean"], n) for n, r in metrics["results"].items() if n != "daam")
    spread = max(r["test_accuracy"]["sd"] for r in metrics["results"].values())
    gap = daam["test_accuracy"]["mean"] - best_baseline[0]
    verdict = (f"DAAM is {gap:+.4f} against the best baseline ({NAMES[best_baseline[1]]}); "
               f"the largest seed spread is {spread:.4f}. ")
    if sec["goal"] is not None:
        goal = f"{sec['goal']:.0%}"
        verdict += (f"The {goal} goal is met." if daam["test_accuracy"]["mean"] >= sec["goal"] else
                    f"**The {goal} goal is not met** by this run.")
    sel = daam["selected_test"]
    confusion = "\n".join(f"| {metrics['labels'][i]} | " + " | ".join(str(v) for v in row) + " |"
                          for i, row in enumerate(sel["confusion_matrix"]))
    quick = "\n> **Smoke-test checkpoint** (`--quick`): not a real result.\n" if metrics.get("quick") else ""
    header = ModelCardData(license="apache-2.0", library_name="daam-lens", pipeline_tag=sec["pipeline_tag"],
                           tags=["density-adaptive-attention", "interpretability", sec["tag"]])
    text = f"""---
{header.to_yaml()}
---
# DAAM {config.modality} checkpoint: {sec['title']}
{quick}
{sec['architecture']} (the layer stage: heads over channel groups, whose mean gate per layer and feature is the
Importance Factor), a softmax-weighted sum of layers, {position_stage(config)}, and a linear head. {sec['saved']}

## Task and data
{sec['data']}

## Results (test split, evaluated once at the end; {len(metrics['seeds'])} seeds each)
{results_table(metrics)}

{verdict}
{sec.get('more_results', '')}
{training_sentence(metrics)}Each run keeps the epoch with the best validation accuracy; the shipped checkpoint is the DAAM seed with the
best validation accuracy (seed {daam['selected_seed']}): test accuracy {sel['accuracy']:.4f}, macro-F1 {sel['macro_f1']:.4f}.
Confusion matrix of that checkpoint (rows: true, columns: predicted):

| | {' | '.join(metrics['labels'])} |
| --- | {' | '.join('---' for _ in metrics['labels'])} |
{confusion}

Training time for the whole run (encoding, {len(metrics['seeds'])} seeds × 3 models): {metrics['train_time_s']} s on the
machine that ran it{data_time_sentence(metrics)}. Curves: `training_curves.json`. All figures: `metrics.json`.
{heads_section(metrics)}{faithfulness_section(metrics)}{ood_section(metrics)}
## Encoder and preprocessing
{sec['encoder']}

## Reproduce
```bash
{sec['reproduce']}
```

## Limitations
{sec['limitations']}
"""
    ModelCard(text).save(out / "README.md")
