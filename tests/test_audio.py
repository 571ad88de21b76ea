"""Audio input: decoding awkward files, the shared preprocessing, Whisper's encoder, the classifier and its checkpoint.

Clips are synthesised in the test (no espeak-ng, no klettres-data, no network)."""

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from daam import DAAMClassifier, DAAMConfig, load_pretrained
from daam.audio import HOP, SAMPLE_RATE, WINDOW_S, prepare_audio
from daam.modalities.audio import SpeechEncoder
from daam.whisper import N_MELS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "audio"


def voiced(rate: int, seconds: float, start: float, length: float = 0.5, channels: int = 1) -> np.ndarray:
    """Silence with a vowel-like burst (harmonics of 140 Hz under a smooth envelope) at `start`."""
    t = np.arange(int(rate * seconds)) / rate
    burst = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    envelope = np.clip(1 - np.abs((t - start - length / 2) / (length / 2)), 0, None) ** 0.5
    x = (0.3 * burst * envelope).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def wav(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def reference():
    return prepare_audio(wav(voiced(16_000, 2.0, 0.8), 16_000))


# ---------------------------------------------------------------------------- preprocessing
def test_silence_is_trimmed_and_times_refer_to_the_original_clip(reference):
    assert reference.log_mel.shape[0] == N_MELS and reference.log_mel.shape[1] == len(reference.frame_times)
    assert 0.6 < reference.start_s < 0.85  # the burst starts at 0.8 s, give or take a frame and the margin
    speech_s = len(reference.waveform) / SAMPLE_RATE
    assert 0.45 < speech_s < 0.75  # the 0.5 s burst plus margins, not the 2 s clip
    assert reference.frame_times[0] >= reference.start_s and np.all(np.diff(reference.frame_times) > 0)
    np.testing.assert_allclose(np.diff(reference.frame_times), HOP / SAMPLE_RATE, rtol=1e-6)
    assert reference.note == ""


@pytest.mark.parametrize("rate", [8_000, 44_100, 96_000])
def test_sample_rates_give_the_same_frames(rate, reference):
    other = prepare_audio(wav(voiced(rate, 2.0, 0.8), rate))
    assert abs(other.log_mel.shape[1] - reference.log_mel.shape[1]) <= 2
    n = min(other.log_mel.shape[1], reference.log_mel.shape[1])
    # 8 kHz has no energy above 4 kHz, so compare the bands below it.
    low = slice(0, 50)
    assert np.corrcoef(other.log_mel[low, :n].ravel(), reference.log_mel[low, :n].ravel())[0, 1] > 0.9


def test_channels_are_mixed_down(reference):
    six = prepare_audio(wav(voiced(16_000, 2.0, 0.8, channels=6), 16_000))
    np.testing.assert_allclose(six.log_mel, reference.log_mel, atol=1e-3)


def test_flac_ogg_and_numpy_input_agree(reference):
    x = voiced(16_000, 2.0, 0.8)
    for data in (wav(x, 16_000, "FLAC"), wav(x, 16_000, "OGG", "VORBIS")):
        other = prepare_audio(data)
        assert abs(other.log_mel.shape[1] - reference.log_mel.shape[1]) <= 2
    from_int16 = prepare_audio((16_000, (x * 32767).astype(np.int16)))  # Gradio's numpy audio
    assert from_int16.log_mel.shape == reference.log_mel.shape
    assert np.corrcoef(from_int16.log_mel.ravel(), reference.log_mel.ravel())[0, 1] > 0.999


def test_long_speech_is_cut_to_its_loudest_window():
    rate = 8_000
    x = 0.01 * voiced(rate, 600.0, 1.0, length=598.0)  # ten minutes of quiet speech-like sound
    loud = np.arange(int(300 * rate), int(301 * rate))
    x[loud] *= 50  # one loud second in the middle
    prepared = prepare_audio(wav(x, rate))
    assert "loudest" in prepared.note and prepared.duration_s == pytest.approx(600.0)
    assert len(prepared.waveform) / SAMPLE_RATE <= WINDOW_S + 0.2
    assert prepared.frame_times[0] < 300.5 and prepared.frame_times[-1] > 300.5  # the window holds the loud second


@pytest.mark.parametrize("data, message", [
    pytest.param(b"", "empty", id="empty-file"),
    pytest.param(wav(np.zeros(0, np.float32), 16_000), "no samples", id="zero-length"),
    pytest.param(wav(voiced(16_000, 0.05, 0.0, 0.05), 16_000), "at least 100 ms", id="50-ms"),
    pytest.param(wav(np.zeros(32_000, np.float32), 16_000), "no speech found", id="silence"),
    pytest.param(wav(np.zeros((11 * 60 * 8_000,), np.int16), 8_000), "limit is 10 minutes", id="11-minutes"),
    pytest.param(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10, "not audio", id="not-audio-named-wav"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(200), "not audio", id="png-bytes"),
])
def test_bad_audio_gets_a_clear_message(data, message):
    with pytest.raises(ValueError, match=message):
        prepare_audio(data)


def test_truncated_file_is_refused_or_read_as_far_as_it_goes():
    data = wav(voiced(16_000, 2.0, 0.2), 16_000)
    try:
        prepared = prepare_audio(data[: len(data) // 2])  # libsndfile reads what is there
    except ValueError as error:
        assert "corrupt" in str(error) or "no speech" in str(error)
    else:
        assert prepared.log_mel.shape[1] > 5


# ---------------------------------------------------------------------------- Whisper's encoder and the classifier
@pytest.fixture(scope="module")
def speech_encoder():
    return SpeechEncoder()


def test_whispers_log_mel_matches_the_reference_feature_extractor(reference):
    from transformers import WhisperFeatureExtractor

    from daam.whisper import log_mel

    expected = WhisperFeatureExtractor(feature_size=N_MELS)(reference.waveform, sampling_rate=SAMPLE_RATE,
                                                            padding="do_not_pad", return_tensors="np").input_features[0]
    ours = log_mel(torch.from_numpy(reference.waveform)).numpy()
    np.testing.assert_allclose(ours, expected[:, : ours.shape[1]], atol=1e-4)


def test_the_encoder_reads_every_array_of_the_ctranslate2_file_and_a_clip_at_its_own_length(speech_encoder, reference):
    from daam.whisper import model_path, output_frames, read_ctranslate2

    arrays = read_ctranslate2(model_path())
    assert arrays["conv1/weight"].shape == (384, N_MELS, 3) and int(arrays["num_heads"]) == 6
    assert len(speech_encoder.model.blocks) == 4 and speech_encoder.layer_names[0] == "embeddings"
    encoded = speech_encoder([reference])
    frames = int(output_frames(torch.tensor(reference.log_mel.shape[1])))
    assert encoded.features.shape == (1, 5, frames, 384) and encoded.mask.all()
    assert encoded.position_labels[0][0] == f"{reference.frame_times[0]:.2f} s"
    np.testing.assert_allclose(encoded.extras[0].position_times, reference.frame_times[::2][:frames])
    with pytest.raises(ValueError, match="not a CTranslate2 model"):
        read_ctranslate2(Path(__file__))  # any other file is refused with a reason, not misread


def small_audio_config() -> DAAMConfig:
    return DAAMConfig("audio", ["A", "B", "C"], num_layers=5, dim=384, layer_heads=2, position_heads=2)


def test_padding_does_not_change_a_clip_and_weights_round_trip(tmp_path, speech_encoder):
    torch.manual_seed(0)
    model = DAAMClassifier(small_audio_config()).eval()
    model.set_encoder(speech_encoder)
    short = prepare_audio(wav(voiced(16_000, 1.0, 0.2, length=0.3), 16_000))
    long = prepare_audio(wav(voiced(16_000, 2.0, 0.2, length=1.2), 16_000))
    alone = model.explain(short)
    batched = model.explain_batch([short, long])[0]
    np.testing.assert_allclose(batched.probabilities, alone.probabilities, atol=1e-4)
    np.testing.assert_allclose(batched.position_weights, alone.position_weights, atol=1e-4)
    assert alone.position_weights.shape == (2, (short.log_mel.shape[1] + 1) // 2)
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    loaded.set_encoder(speech_encoder)
    loaded.use_fused_kernel(False)  # as the model built above runs: the weights, not the kernel, are on trial here
    np.testing.assert_allclose(loaded.explain(short).probabilities, alone.probabilities, atol=0)


def test_training_augmentation_stays_finite_at_low_rates_and_perturbs_speakers():
    from daam.data.spoken_letters import augment, perturb_speaker

    rng = np.random.default_rng(0)
    for rate in (8_000, 16_000, 22_050):  # flite's kal voice is 8 kHz: a band limit above Nyquist would blow up
        clip = voiced(rate, 1.0, 0.2)
        for _ in range(10):
            out = augment(rate, clip, rng)
            assert np.isfinite(out).all() and 0 < np.abs(out).max() <= 0.9

    rate, clip = 16_000, voiced(16_000, 1.0, 0.2)
    factors = []
    for _ in range(10):
        out = perturb_speaker(rate, clip, rng)
        factor = len(clip) / len(out)  # played faster -> shorter and higher
        spectrum = np.abs(np.fft.rfft(out))
        peak_hz = np.fft.rfftfreq(len(out), 1 / rate)[spectrum.argmax()]
        assert 0.87 <= factor <= 1.13 and abs(peak_hz - 140 * factor) < 3  # the pitch moves with the speed
        factors.append(factor)
    assert np.ptp(factors) > 0.05


def test_test_accuracy_is_reported_per_voice_and_the_card_lists_the_worst_voice_first(tmp_path):
    import json

    from daam.model_card import write_card
    from daam.metrics import classification_report

    y_true, y_pred = np.array([0, 1, 0, 1, 0, 1]), np.array([0, 1, 1, 1, 0, 0])
    voices = ["Max", "Max", "Alicia", "Alicia", "Jacky", "Jacky"]
    assert "accuracy_per_group" not in classification_report(y_true, y_pred, ["A", "B"])
    report = classification_report(y_true, y_pred, ["A", "B"], voices)
    assert report["accuracy_per_group"] == {"Max": 1.0, "Alicia": 0.5, "Jacky": 0.5}

    shipped = ROOT / "checkpoints/audio"
    metrics = json.loads((shipped / "metrics.json").read_text())
    metrics["results"]["daam"]["selected_test"]["accuracy_per_group"] = {"Max": 0.99, "Alicia": 0.375, "Jacky": 0.68}
    write_card(tmp_path, metrics, DAAMClassifier.from_pretrained(shipped).config)
    card = (tmp_path / "README.md").read_text()
    assert "Alicia 0.375, Jacky 0.680, Max 0.990: 1 of 3 voices reach 0.97" in " ".join(card.split())


needs_checkpoint = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no audio checkpoint shipped")


@needs_checkpoint
def test_shipped_checkpoint_explains_the_examples():
    model = load_pretrained(SHIPPED)
    examples = sorted(p for p in (ROOT / "examples").glob("audio_*") if p.suffix in (".wav", ".ogg"))
    assert examples, "examples/audio_* clips are missing"
    for path in examples:
        e = model.explain(str(path))
        frames = (prepare_audio(path).log_mel.shape[1] + 1) // 2
        assert e.position_weights.shape == (model.config.position_heads, frames)
        assert len(e.extras.log_mel) == N_MELS and abs(sum(e.probabilities) - 1) < 1e-5
        assert e.predicted_label == path.stem.split("_")[-1].upper()  # every shipped example is named correctly


def test_the_speech_probe_tells_speech_from_sounds_it_was_not_fitted_on(speech_encoder):
    from daam.modalities import no_answer
    from daam.fit_speech_probe import sounds
    from daam.speech import PROBE_PATH

    assert PROBE_PATH.is_file() and speech_encoder.speech_probe is not None
    other = sounds(18, seed=7)  # two of each family, from a seed the probe never saw
    examples = sorted(p for p in (ROOT / "examples").glob("audio_*") if p.suffix in (".wav", ".ogg"))
    sound_p = [e.speech_probability for e in speech_encoder(other).extras]
    speech_p = [e.speech_probability for e in speech_encoder([str(p) for p in examples]).extras]
    assert max(sound_p) < 0.5 < min(speech_p)
    model = load_pretrained(SHIPPED)
    tone = model.explain(wav(0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000).astype(np.float32), 16_000))
    assert no_answer(tone) == "not speech" and no_answer(model.explain(str(examples[0]))) is None


@needs_checkpoint
def test_the_silenced_reference_is_encoded_in_the_clips_own_batch_with_the_same_relevance(monkeypatch):
    """ReferenceRelevance: one encoder pass for the clips and their silenced references together (Encoded.reference),
    and the same explanation as encoding the references in a pass of their own."""
    model = load_pretrained(SHIPPED)
    clips = [prepare_audio(wav(voiced(SAMPLE_RATE, seconds, 0.1), SAMPLE_RATE)) for seconds in (0.6, 1.0)]
    passes = []
    original = model.encoder._hidden
    monkeypatch.setattr(model.encoder, "_hidden", lambda mels: passes.append(len(mels)) or original(mels))
    together = model.explain_batch(clips)
    assert passes == [4]  # two clips and their two references, one batch
    monkeypatch.setattr(model.encoder, "encodes_reference", False)
    passes.clear()
    apart = model.explain_batch(clips)
    assert passes == [2, 2]
    for a, b in zip(together, apart):
        np.testing.assert_allclose(a.position_relevance, b.position_relevance, atol=1e-5)
        np.testing.assert_allclose(a.head_relevance, b.head_relevance, atol=1e-5)
        assert a.predicted_label == b.predicted_label
