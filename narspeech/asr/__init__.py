"""NAR ASR models (importing this package registers them in ``narspeech.registry.MODELS``)."""

from narspeech.asr.ar import ARConfig, AttentionModel
from narspeech.asr.base import ASRDecodeOptions, ASRModel, Model
from narspeech.asr.ctc import CTCModel, CTCModelConfig
from narspeech.asr.imputer import ImputerConfig, ImputerModel
from narspeech.asr.mask_ctc import MaskCTCConfig, MaskCTCModel

__all__ = ["ARConfig", "ASRDecodeOptions", "AttentionModel", "ASRModel", "CTCModel", "CTCModelConfig", "ImputerConfig", "ImputerModel", "MaskCTCConfig", "MaskCTCModel", "Model"]
