"""Audio I/O and features."""

from narspeech.audio.features import (
    NUM_MEL_BINS,
    SAMPLE_RATE,
    CMVNAccumulator,
    GlobalCMVN,
    SpecAugment,
    fbank,
    num_frames,
    speed_perturb,
)
from narspeech.audio.io import AudioError, audio_duration, load_audio

__all__ = [
    "NUM_MEL_BINS", "SAMPLE_RATE", "AudioError", "CMVNAccumulator", "GlobalCMVN", "SpecAugment", "audio_duration",
    "fbank", "load_audio", "num_frames", "speed_perturb",
]
