"""Recordings (WAV files) decoded once, checked, resampled and cut or padded to one length,
and held as rows that training reads a piece at a time (`dlcli.data.media.store`).

The WAV container is read by SciPy's `scipy.io.wavfile` (8-, 16-, 24- and 32-bit integer
PCM, as Keras's `audio_dataset_from_directory` reads PCM; a compressed or floating-point WAV
is refused, naming its format). Samples become float32 in -1..1, channels are averaged to
mono, the rate is changed to `data.sampling_rate` by SciPy's polyphase resampler
(`resample_poly`, which filters before it decimates), and the recording is cut or padded with
silence at its end to `data.output_sequence_length` samples. Each sample is
`(output_sequence_length,)`, what `MelSpectrogram` takes; the model gives layers that want a
channel axis (`STFTSpectrogram`, `Conv1D`, recurrent layers) `(length, 1)`.

Example:
    >>> rate, frames, channels = header("tones/low/0.wav")
    >>> decoded = decode_files(files, 8000, 8000)
    >>> decoded.rows.sample_shape
    (8000,)
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections import Counter

import numpy as np

from dlcli.data.media import store
from dlcli.data.media.store import BadFile, Decoded
from dlcli.errors import ConfigError, Problem

MAX_SECONDS = 3600  # a recording longer than an hour is not a training sample


class BadAudio(BadFile):
    """Why a file is not a recording dlcli can use (one phrase)."""


def _wav(data) -> tuple[int, np.ndarray]:
    """(rate, samples) of a WAV file's bytes (or path); BadAudio for anything else."""
    from scipy.io import wavfile

    if isinstance(data, bytes) and not data:
        raise BadAudio("is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # chunks SciPy passes over (LIST, cue)
            rate, samples = wavfile.read(
                io.BytesIO(data) if isinstance(data, bytes) else data,
                mmap=not isinstance(data, bytes),
            )
    except ValueError as exc:
        said = store.reason(exc)
        if "mmap" in said and not isinstance(data, bytes):  # 24-bit PCM cannot be mapped
            return _wav(store.read_bytes(data, "audio", BadAudio))
        if "Unknown wave file format" in said or "Unsupported bit depth" in said:
            raise BadAudio(
                f"is a WAV that is not integer PCM ({said}); convert it to 16-bit PCM "
                "(ffmpeg -i in.wav -c:a pcm_s16le out.wav)"
            ) from None
        raise BadAudio(f"cannot be decoded as WAV ({said})") from None
    except (OSError, EOFError, IndexError, TypeError) as exc:
        raise BadAudio(f"cannot be decoded as WAV ({store.reason(exc)})") from None
    if samples.dtype.kind == "f":
        raise BadAudio(
            f"is a {samples.dtype.itemsize * 8}-bit floating-point WAV, not PCM; convert it to "
            "16-bit PCM (ffmpeg -i in.wav -c:a pcm_s16le out.wav)"
        )
    if rate <= 0:
        raise BadAudio(f"declares a sampling rate of {rate}")
    return int(rate), samples


def header(path: str) -> tuple[int, int, int]:
    """(rate, frames, channels) of a WAV file, its samples mapped, not read; BadAudio when
    it is not a PCM WAV dlcli reads."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadAudio("is not a regular file")
    except OSError as exc:
        raise BadAudio(f"cannot be read ({exc.strerror or exc})") from None
    rate, samples = _wav(path)
    frames = samples.shape[0]
    return rate, frames, (samples.shape[1] if samples.ndim == 2 else 1)


def decode(data: bytes, rate: int, length: int) -> np.ndarray:
    """A WAV file's bytes as float32 `(length,)`: mono, at `rate`, cut or padded with
    silence; BadAudio for a file that is not one, or holds no sample."""
    found, samples = _wav(data)
    if samples.shape[0] == 0:
        raise BadAudio("holds no samples (a zero-length recording); remove it")
    if samples.shape[0] > found * MAX_SECONDS:
        raise BadAudio(f"is longer than {MAX_SECONDS // 60} minutes; cut it into clips")
    if samples.dtype == np.uint8:  # 8-bit WAV is unsigned
        wave = (samples.astype("float32") - 128.0) / 128.0
    else:
        wave = samples.astype("float32") / float(2 ** (8 * samples.dtype.itemsize - 1))
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if found != rate:
        from scipy.signal import resample_poly  # a second to import: only when resampling

        g = math.gcd(found, rate)
        wave = resample_poly(wave, rate // g, found // g).astype("float32")
    out = np.zeros(length, dtype="float32")
    take = min(length, len(wave))
    out[:take] = wave[:take]
    return out


def decode_files(files: list[str], rate: int, length: int, others: dict | None = None) -> Decoded:
    """Decode every file of `files` into float32 rows of `(length,)`; the files that fail
    are in `Decoded.bad` (with `others`, files already known to be unusable)."""
    return store.decode_files(
        files,
        lambda data: decode(data, rate, length),
        (length,),
        "float32",
        BadAudio,
        "recordings",
        others,
    )


def settings(
    files: list[str], rate: int | None, length: int | None, where: dict
) -> tuple[int, int]:
    """(sampling rate, samples per recording): as set, else the rate every file shares (a
    ConfigError at data.sampling_rate's line naming the rates when they differ) and the
    longest recording at that rate. Headers only; a file that fails is named by decoding."""
    rates: Counter = Counter()
    longest = 0.0
    first: dict[int, str] = {}
    for path in files:
        try:
            found, frames, _ = header(path)
        except BadAudio:
            continue
        rates[found] += 1
        first.setdefault(found, path)
        longest = max(longest, frames / found)
    if rate is None:
        if len(rates) > 1:
            shown = ", ".join(
                f"{r} Hz ({first[r].rsplit('/', 1)[-1]})" for r, _ in rates.most_common(3)
            )
            raise ConfigError(
                Problem(
                    f"the recordings differ in sampling rate ({shown}); set "
                    "data.sampling_rate to resample them all to one (16000 for speech)",
                    where=where["sampling_rate"],
                )
            )
        rate = next(iter(rates)) if rates else 16000
    if length is None:
        length = max(1, round(min(longest, MAX_SECONDS) * rate))
    return rate, length


__all__ = ["BadAudio", "decode", "decode_files", "header", "settings"]
