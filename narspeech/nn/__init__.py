"""Neural building blocks: masks, subsampling, positional encoding, Transformer/Conformer encoders."""

from narspeech.nn.encoder import Encoder, EncoderConfig
from narspeech.nn.mask import make_pad_mask

__all__ = ["Encoder", "EncoderConfig", "make_pad_mask"]
