"""Text NAT models (importing this package registers them in ``narspeech.registry.MODELS``): CTC-NAT so far."""

from narspeech.mt.ctc_nat import CTCNATConfig, CTCNATModel

__all__ = ["CTCNATConfig", "CTCNATModel"]
