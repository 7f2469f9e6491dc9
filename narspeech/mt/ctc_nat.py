"""CTC-NAT: non-autoregressive text-to-text with connectionist temporal classification (Libovický & Helcl, EMNLP
2018, "End-to-End Non-Autoregressive Neural Machine Translation with Connectionist Temporal Classification").

A non-causal Transformer encodes the source tokens; each state is split into ``upsample`` states (a linear map to
``upsample * d`` features, as in the paper), and a CTC head over those predicts the target: the target may be up to
``upsample`` times longer than the source, and its length comes out of the alignment (no length predictor). One pass
decodes every token (greedy CTC). The text-to-text task's default model; GLAT on top is the MT issue's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from narspeech.nat.ctc import ctc_greedy, ctc_loss
from narspeech.nn.encoder import Encoder, EncoderConfig
from narspeech.registry import MODELS
from narspeech.tasks.text2text import Text2TextModel
from narspeech.train.loss import LossTerm


def _text_encoder() -> EncoderConfig:
    return EncoderConfig(block="transformer", d_model=256, num_heads=4, ffn_dim=1024, num_layers=6, dropout=0.1,
                         subsampling_factor=1)


@dataclass
class CTCNATConfig:
    encoder: EncoderConfig = field(default_factory=_text_encoder)  # subsampling_factor 1: one state per token
    upsample: int = 3  # CTC states per source token (the paper: 2-3); the target can be up to this much longer


@MODELS.register("ctc_nat")
class CTCNATModel(Text2TextModel):
    """Source embedding -> Transformer encoder -> x ``upsample`` split -> CTC head over the target vocabulary."""

    Config = CTCNATConfig

    def __init__(self, vocab_size: int, src_vocab_size: int, encoder: Encoder, upsample: int) -> None:
        super().__init__()
        if upsample < 1:
            raise ValueError(f"upsample must be >= 1, got {upsample}")
        d = encoder.d_model
        self.vocab_size = vocab_size
        self.upsample = upsample
        self.embed = nn.Embedding(src_vocab_size, d)
        self.encoder = encoder
        self.split = nn.Linear(d, upsample * d)
        self.ctc_head = nn.Linear(d, vocab_size)

    @classmethod
    def from_config(cls, cfg: CTCNATConfig, vocab_size: int, src_vocab_size: int | None = None) -> "CTCNATModel":
        enc = Encoder.from_config(cfg.encoder.d_model, cfg.encoder)
        return cls(vocab_size, src_vocab_size or vocab_size, enc, cfg.upsample)

    def log_probs(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src`` (B, S) ids padded with -1, ``src_lens`` (B,) -> CTC log-posteriors (B, S * upsample, V) and the
        valid states per item (B,)."""
        h, lens = self.encoder(self.embed(src.clamp_min(0)), src_lens)
        b, s, d = h.shape
        h = self.split(h).view(b, s * self.upsample, d)
        return self.ctc_head(h).log_softmax(-1), lens * self.upsample

    def forward(self, batch: dict[str, torch.Tensor], **group) -> dict[str, LossTerm]:
        """``batch``: ``src`` (B, S), ``src_lens`` (B,), ``tokens`` (B, L) padded with -1, ``token_lens`` (B,)."""
        lp, lens = self.log_probs(batch["src"], batch["src_lens"])
        return {"ctc": LossTerm(ctc_loss(lp, lens, batch["tokens"], batch["token_lens"]))}

    @torch.inference_mode()
    def infer(self, src: torch.Tensor, src_lens: torch.Tensor) -> list[list[int]]:
        lp, lens = self.log_probs(src, src_lens)
        return ctc_greedy(lp, lens)
