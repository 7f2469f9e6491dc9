"""A minimal ctypes driver of the espeak-ng library shipped by the ``espeakng-loader`` wheel.

Only what the demo corpus needs: synchronous synthesis of one text with a voice (``"en-us+f3"``: language voice +
variant), a speaking rate and a base pitch, returned as float32 samples at :data:`SAMPLE_RATE`.

espeak-ng keeps its state in process globals and is not thread-safe, so the library is loaded and initialized once per
process, lazily, and every call holds a lock. Worker processes each initialize their own copy: with ``spawn`` the
module is imported afresh; with ``fork`` the child inherits an initialized copy (synchronous mode starts no thread, so
the copy is usable) and only the lock is recreated.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050  # Hz; espeak-ng's fixed output rate, checked against what espeak_Initialize reports

# enum values from espeak-ng's speak_lib.h (stable public ABI)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data cannot be loaded
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_PARAM_RATE = 1  # words per minute, 80..450
_PARAM_PITCH = 3  # base pitch, 0..100 (50 = the voice's own)
_PARAM_RANGE = 4  # pitch range, 0..100 (50 = the voice's own)
_CALLBACK_CONTINUE = 0

RATE_RANGE = (80, 450)  # words per minute espeak-ng accepts
PARAM_RANGE = (0, 100)  # for pitch and pitch range
_INT16_SCALE = 32768.0

# espeak-ng's synth callback: int cb(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """The espeak-ng library cannot be loaded/initialized, or it rejected a voice, parameter or text."""


class _Engine:
    """The process's initialized library, its callback and the buffer the callback fills."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise EspeakError("espeak-ng is not available: install the 'espeakng-loader' package") from e
        lib_path = espeakng_loader.get_library_path()
        try:
            data_path = espeakng_loader.get_data_path()
        except RuntimeError as e:
            raise EspeakError(f"espeak-ng data not found: {e}") from e
        # checked first: espeak_Initialize would only print an error naming its build-time default path and return 0
        if not (Path(data_path) / "phontab").is_file():
            raise EspeakError(f"espeak-ng data directory {data_path!r} has no phontab: broken espeakng-loader install")
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakError(f"cannot load the espeak-ng library {lib_path!r}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        # espeak-ng accepts either espeak-ng-data itself or its parent directory as the path
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, os.fsencode(data_path), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data path {data_path!r}")
        if rate != SAMPLE_RATE:
            raise EspeakError(f"espeak-ng reports a sample rate of {rate} Hz, expected {SAMPLE_RATE}")
        self.lib = lib
        self.chunks: list[np.ndarray] = []
        # keep a reference: ctypes frees the C thunk when the Python object dies, and espeak would call freed memory
        self._callback = _SynthCallback(self._on_samples)
        lib.espeak_SetSynthCallback(self._callback)
        self.voice: str | None = None

    def _on_samples(self, wav: ctypes.POINTER(ctypes.c_short), numsamples: int, _events: int) -> int:
        if wav and numsamples > 0:
            # copy: espeak reuses its buffer after the callback returns
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return _CALLBACK_CONTINUE

    def set_voice(self, voice: str) -> None:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode("utf-8")) != _EE_OK:
                self.voice = None
                raise EspeakError(f"espeak-ng has no voice {voice!r} (try e.g. 'en-us', 'en-us+f3', 'en-gb-x-rp+m1')")
            self.voice = voice

    def set_param(self, param: int, value: int, name: str) -> None:
        if self.lib.espeak_SetParameter(param, value, 0) != _EE_OK:
            raise EspeakError(f"espeak-ng rejected {name}={value}")

    def synth(self, text: str) -> np.ndarray:
        self.chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with code {err} for text {text!r}")
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        self.chunks = []
        return pcm


_engine: _Engine | None = None  # after a fork, the child's private copy of the parent's initialized engine: usable
_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    # a lock held by another thread at fork time would stay held forever in the child
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def is_available() -> tuple[bool, str]:
    """Whether espeak-ng can be loaded and initialized here; the reason when it cannot."""
    try:
        with _lock:
            _get_engine()
    except EspeakError as e:
        return False, str(e)
    return True, ""


def synthesize(
    text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50
) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return mono float32 samples in [-1, 1] at :data:`SAMPLE_RATE`.

    ``voice`` is an espeak voice name, optionally with a variant (``"en-us+f3"``); ``rate`` is in words per minute
    (80..450); ``pitch`` and ``pitch_range`` are 0..100 (50 keeps the voice's own). Raises :class:`EspeakError` on
    any failure. The samples are not bit-exact across calls (espeak-ng carries waveform state and libc ``rand()``
    noise from one call to the next), though durations agree within a few milliseconds.
    """
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise ValueError(f"rate must be in {RATE_RANGE} words per minute, got {rate}")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not PARAM_RANGE[0] <= value <= PARAM_RANGE[1]:
            raise ValueError(f"{name} must be in {PARAM_RANGE}, got {value}")
    with _lock:
        engine = _get_engine()
        engine.set_voice(voice)
        # set after the voice: loading a voice may reset the prosody parameters
        engine.set_param(_PARAM_RATE, rate, "rate")
        engine.set_param(_PARAM_PITCH, pitch, "pitch")
        engine.set_param(_PARAM_RANGE, pitch_range, "pitch_range")
        pcm = engine.synth(text)
    return pcm.astype(np.float32) / _INT16_SCALE
