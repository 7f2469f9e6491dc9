"""Conformer/Transformer CTC ASR (Graves et al., 2006; Gulati et al., 2020).

Global CMVN and SpecAugment live inside the model, so a checkpoint takes raw 80-dim fbank and needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from narspeech.asr.base import ASRDecodeOptions, ASRModel
from narspeech.audio.features import NUM_MEL_BINS, GlobalCMVN, SpecAugment
from narspeech.nat.ctc import ctc_greedy, ctc_prefix_beam_search
from narspeech.nn.encoder import Encoder, EncoderConfig
from narspeech.registry import MODELS
from narspeech.text.tokenizer import BLANK_ID
from narspeech.train.loss import LossTerm


@dataclass
class SpecAugConfig:
    num_freq_masks: int = 2
    max_freq_width: int = 27
    num_time_masks: int = 2
    max_time_ratio: float = 0.05  # of each utterance's length


@dataclass
class CTCModelConfig:
    input_dim: int = NUM_MEL_BINS
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)


@MODELS.register("ctc")
class CTCModel(ASRModel):
    """Encoder + linear CTC head."""

    Config = CTCModelConfig

    def __init__(self, vocab_size: int, encoder: Encoder, specaug: SpecAugment, input_dim: int = NUM_MEL_BINS) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.cmvn = GlobalCMVN(input_dim)
        self.specaug = specaug
        self.encoder = encoder
        self.ctc_head = nn.Linear(encoder.d_model, vocab_size)

    @classmethod
    def from_config(cls, cfg: CTCModelConfig, vocab_size: int) -> "CTCModel":
        s = cfg.specaug
        return cls(
            vocab_size,
            Encoder.from_config(cfg.input_dim, cfg.encoder),
            SpecAugment(s.num_freq_masks, s.max_freq_width, s.num_time_masks, s.max_time_ratio),
            cfg.input_dim,
        )

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.specaug(self.cmvn(feats), feat_lens)
        return self.encoder(x, feat_lens)

    def ctc_log_probs(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) fbank, (B,) -> CTC log posteriors (B, T', V), valid frames (B,)."""
        h, lens = self.encode(feats, feat_lens)
        return self.ctc_head(h).log_softmax(-1), lens

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, LossTerm]:
        """``batch``: feats (B, T, D), feat_lens (B,), tokens (B, L) padded with -1, token_lens (B,)."""
        log_probs, lens = self.ctc_log_probs(batch["feats"], batch["feat_lens"])
        return {"ctc": LossTerm(ctc_loss(log_probs, lens, batch["tokens"], batch["token_lens"]))}

    @torch.inference_mode()
    def infer(self, feats: torch.Tensor, feat_lens: torch.Tensor, opts: ASRDecodeOptions = ASRDecodeOptions()) -> list[list[int]]:
        log_probs, lens = self.ctc_log_probs(feats, feat_lens)
        if opts.method == "greedy":
            return ctc_greedy(log_probs, lens, BLANK_ID)
        if opts.method == "beam":
            return [
                list(ctc_prefix_beam_search(lp[: int(n)], opts.beam_size, BLANK_ID)[0].tokens)
                for lp, n in zip(log_probs, lens)
            ]
        raise ValueError(f"unknown CTC decoding method {opts.method!r}; valid: greedy, beam")


def ctc_loss(log_probs: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor) -> torch.Tensor:
    """Mean over utterances of the per-utterance CTC loss (summed over its frames).

    ``log_probs`` (B, T, V), ``lens`` (B,), ``tokens`` (B, L) padded with -1, ``token_lens`` (B,).
    Utterances too short for their transcript give inf; ``zero_infinity`` keeps them from poisoning the batch.
    """
    targets = tokens.clamp_min(0)
    loss = nn.functional.ctc_loss(
        log_probs.transpose(0, 1).float(), targets, lens, token_lens,
        blank=BLANK_ID, reduction="sum", zero_infinity=True,
    )
    return loss / log_probs.size(0)
