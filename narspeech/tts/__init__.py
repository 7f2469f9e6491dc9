"""Non-autoregressive TTS (importing this package registers the models in ``narspeech.registry.MODELS``): FastSpeech 2
with its built-in aligner so far."""

from narspeech.tts.fastspeech2 import FastSpeech2, FastSpeech2Config

__all__ = ["FastSpeech2", "FastSpeech2Config"]
