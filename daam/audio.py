"""Audio input: safe decoding, and the one preprocessing shared by training and the app.

    file -> soundfile decode -> mono -> trim leading/trailing silence (energy)
         -> the loudest WINDOW_S seconds if longer -> resample to 16 kHz -> Whisper's log-mel (daam.whisper)

The clip keeps its own length: Whisper's encoder reads it as is, not padded to 30 s."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .files import file_bytes

from .whisper import HOP, N_FFT, SAMPLE_RATE, log_mel

MIN_SECONDS = 0.1
MAX_SECONDS = 600.0  # longer files are refused before their samples are decoded
WINDOW_S = 2.0  # a letter name lasts well under a second; longer speech is cut to its loudest 2 s
SILENCE_DBFS = -60.0  # a clip whose loudest 20 ms is below this has no speech to find
TRIM_DB = 35.0  # frames this far below the loudest frame count as leading/trailing silence
ACCEPTED = "WAV, FLAC or OGG"


@dataclass
class PreparedAudio:
    """What the model hears, plus where it came from in the original clip (times in seconds)."""

    waveform: np.ndarray  # (samples,) float32 at 16 kHz, trimmed and windowed
    log_mel: np.ndarray  # (80, frames): Whisper's log-mel, what its encoder reads (log10 power, scaled)
    frame_times: np.ndarray  # (frames,) centre of each 10 ms mel frame in the original clip
    start_s: float
    duration_s: float  # of the whole original clip
    note: str  # what was cut, in words ("" when nothing was)


def decode_audio(source) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the sample rate, from a path, bytes or (rate, array); InputError if unreadable."""
    import soundfile as sf

    if isinstance(source, tuple) and len(source) == 2:  # (rate, samples), as Gradio's numpy audio gives
        rate, samples = source
        samples = np.asarray(samples)
        if np.issubdtype(samples.dtype, np.signedinteger):
            samples = samples / float(-np.iinfo(samples.dtype).min)  # int16: 32768, as soundfile scales
        samples = samples.astype(np.float32)
        return (samples[:, None] if samples.ndim == 1 else samples), int(rate)
    data = file_bytes(source, "audio")
    try:
        info = sf.info(io.BytesIO(data))
        if info.frames / max(info.samplerate, 1) > MAX_SECONDS:
            raise InputError(f"the clip lasts {info.frames / info.samplerate / 60:.1f} minutes; "
                             f"the limit is {MAX_SECONDS / 60:.0f} minutes")
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        # libsndfile's own words ("Format not recognised."), never the repr of our in-memory buffer
        detail = getattr(error, "error_string", "") or re.sub(r"<[^>]*>", "the file", str(error))
        raise InputError(f"this file is not audio that can be read, or it is corrupt; send a {ACCEPTED} file "
                         f"({detail.strip()})") from None
    return samples, rate


def _frame_db(mono: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Energy of consecutive 20 ms frames in dBFS, and the frame length in samples."""
    frame = max(1, int(0.02 * rate))
    usable = len(mono) // frame * frame
    power = (mono[:usable].reshape(-1, frame) ** 2).mean(1) if usable else np.array([(mono ** 2).mean()])
    return 10 * np.log10(power + 1e-12), frame


def prepare_audio(source) -> PreparedAudio:
    """Any supported clip -> the trimmed, windowed 16 kHz log-mel frames the model reads."""
    import torchaudio

    samples, rate = decode_audio(source)
    if samples.shape[0] == 0:
        raise InputError("the audio has no samples (zero length)")
    if not np.isfinite(samples).all():
        raise InputError("the audio contains invalid sample values (NaN or infinity)")
    duration = samples.shape[0] / rate
    if duration < MIN_SECONDS:
        raise InputError(f"the clip is {duration * 1000:.0f} ms long; at least {MIN_SECONDS * 1000:.0f} ms is needed")
    mono = samples.mean(axis=1)  # mix every channel down
    db, frame = _frame_db(mono, rate)
    if db.max() < SILENCE_DBFS:
        raise InputError(f"no speech found: the clip is silent (its loudest moment is {db.max():.0f} dBFS)")
    loud = np.nonzero(db > db.max() - TRIM_DB)[0]
    first, last = loud[0], loud[-1] + 1  # in frames
    notes = []
    window = int(WINDOW_S / 0.02)
    if last - first > window:  # the loudest window: a running sum of frame power
        power = np.convolve(10 ** (db[first:last] / 10), np.ones(window), mode="valid")
        first = first + int(power.argmax())
        last = first + window
        notes.append(f"the speech lasts over {WINDOW_S:g} s, so the loudest {WINDOW_S:g} s were analysed")
    margin = 3  # frames (60 ms) of context each side of the speech
    first, last = max(first - margin, 0), min(last + margin, len(db))
    start = first * frame / rate
    clip = torch.from_numpy(np.ascontiguousarray(mono[first * frame:last * frame]))
    if rate != SAMPLE_RATE:
        clip = torchaudio.functional.resample(clip, rate, SAMPLE_RATE)
    if clip.numel() < N_FFT:
        raise InputError(f"the speech in this clip is too short to analyse (under {N_FFT / SAMPLE_RATE * 1000:.0f} ms)")
    mel = log_mel(clip.float())  # (80, frames)
    frame_times = start + np.arange(mel.shape[1]) * HOP / SAMPLE_RATE  # centred windows: frame i at i hops
    return PreparedAudio(clip.numpy().astype(np.float32), mel.numpy(), frame_times, start, duration, "; ".join(notes))
