"""NAR ASR models (importing this package registers them in ``narspeech.registry.MODELS``)."""

from narspeech.asr.base import ASRDecodeOptions, ASRModel, Model
from narspeech.asr.ctc import CTCModel, CTCModelConfig

__all__ = ["ASRDecodeOptions", "ASRModel", "CTCModel", "CTCModelConfig", "Model"]
