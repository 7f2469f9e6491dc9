"""Conformer/Transformer CTC ASR (Graves et al., 2006; Gulati et al., 2020), with two encoder options:

- Intermediate CTC (Lee & Watanabe, 2021, arXiv:2102.03216): CTC losses on the outputs of chosen encoder layers
  (final norm + the shared CTC head); loss ``(1 - w) * CTC + w * mean(InterCTC)``.
- Self-conditioned CTC (Nozaki & Komatsu, 2021, arXiv:2104.02724): the intermediate posteriors are projected back
  to the model dimension and added to the hidden states, in training and in inference.

Global CMVN and SpecAugment live inside the model, so a checkpoint takes raw 80-dim fbank and needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from narspeech.asr.base import ASRDecodeOptions, ASRModel
from narspeech.audio.features import NUM_MEL_BINS, GlobalCMVN, SpecAugment
from narspeech.nat.ctc import ctc_greedy, ctc_loss, ctc_prefix_beam_search
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


def build_specaug(cfg: SpecAugConfig) -> SpecAugment:
    return SpecAugment(cfg.num_freq_masks, cfg.max_freq_width, cfg.num_time_masks, cfg.max_time_ratio)


@dataclass
class CTCModelConfig:
    input_dim: int = NUM_MEL_BINS
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    interctc_layers: list[int] = field(default_factory=list)  # 1-based encoder layers with an intermediate CTC loss
    interctc_weight: float = 0.0  # w in (1 - w) * CTC + w * mean(InterCTC)
    self_condition: bool = False  # SC-CTC: feed the intermediate posteriors back into the encoder


def check_interctc(num_layers: int, layers: Sequence[int], weight: float, self_condition: bool) -> None:
    """Raise ValueError for Intermediate CTC / self-conditioning options that do not fit an encoder of
    ``num_layers`` blocks."""
    bad = [i for i in layers if not 1 <= i < num_layers]
    if bad:
        raise ValueError(f"interctc_layers {bad} must be in 1..{num_layers - 1} (the last layer already has the CTC loss)")
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"interctc_weight must be in [0, 1), got {weight}")
    if self_condition and not layers:
        raise ValueError("self_condition needs interctc_layers (the layers whose posteriors are fed back)")


def encode_interctc(
    encoder: Encoder,
    x: torch.Tensor,
    x_lens: torch.Tensor,
    ctc_head: nn.Module,
    layers: Sequence[int],
    cond_proj: nn.Module | None,
    collect: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Run ``encoder`` on ``x`` (B, T, D), ``x_lens`` (B,) with Intermediate CTC at the 1-based ``layers``: each
    one's output goes through the encoder's final norm and the shared ``ctc_head``; with ``cond_proj`` (SC-CTC)
    the softmax of those logits is projected and added back to the hidden states (training and inference alike).
    -> encoder output (B, T', d), valid frames (B,), and (with ``collect``) the intermediate logits (B, T', V) per
    layer. Without ``collect`` and ``cond_proj`` no intermediate head is computed (plain encoder cost)."""
    inter: list[torch.Tensor] = []

    def hook(i: int, h: torch.Tensor, lens: torch.Tensor) -> torch.Tensor | None:
        if i not in layers:
            return None
        logits = ctc_head(encoder.norm(h))
        inter.append(logits)
        return h + cond_proj(logits.softmax(-1)) if cond_proj is not None else None

    use_hook = bool(layers) and (collect or cond_proj is not None)
    h, lens = encoder(x, x_lens, hook if use_hook else None)
    return h, lens, inter


def ctc_terms(
    log_probs: torch.Tensor,
    lens: torch.Tensor,
    inter: Sequence[torch.Tensor],
    tokens: torch.Tensor,
    token_lens: torch.Tensor,
    interctc_weight: float,
    scale: float = 1.0,
) -> dict[str, LossTerm]:
    """The CTC loss terms: ``ctc`` on the final ``log_probs`` (B, T', V) with weight ``scale * (1 - w)`` and, when
    there are intermediate logits ``inter``, ``interctc`` (their mean CTC loss) with weight ``scale * w``;
    ``scale`` is the CTC share of a joint model (Mask-CTC's lambda, as in ESPnet)."""
    w = interctc_weight if inter else 0.0
    terms = {"ctc": LossTerm(ctc_loss(log_probs, lens, tokens, token_lens), scale * (1.0 - w))}
    if inter:
        losses = [ctc_loss(z.log_softmax(-1), lens, tokens, token_lens) for z in inter]
        terms["interctc"] = LossTerm(torch.stack(losses).mean(), scale * w)
    return terms


class CTCEncoderMixin:
    """The front of every model on conf ``ctc``'s encoder: global CMVN, SpecAugment, the encoder, its linear CTC
    head, and the Intermediate CTC / self-conditioning options. ``__init__`` calls :meth:`_init_ctc_encoder`
    (after ``nn.Module.__init__``); ``encode`` / ``_encode`` run the encoder with the options."""

    def _init_ctc_encoder(
        self,
        vocab_size: int,
        input_dim: int,
        encoder: Encoder,
        specaug: SpecAugment,
        interctc_layers: Sequence[int],
        interctc_weight: float,
        self_condition: bool,
    ) -> None:
        check_interctc(len(encoder.layers), interctc_layers, interctc_weight, self_condition)
        self.vocab_size = vocab_size
        self.cmvn = GlobalCMVN(input_dim)
        self.specaug = specaug
        self.encoder = encoder
        self.ctc_head = nn.Linear(encoder.d_model, vocab_size)
        self.interctc_layers = tuple(interctc_layers)
        self.interctc_weight = interctc_weight
        # one projection shared by all conditioned layers, as in the paper and ESPnet
        self.cond_proj = nn.Linear(vocab_size, encoder.d_model) if self_condition else None

    def _encode(
        self, feats: torch.Tensor, feat_lens: torch.Tensor, collect: bool
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Encoder output (B, T', d), valid frames (B,), and (with ``collect``) the intermediate CTC logits
        (B, T', V) per chosen layer. Without ``collect`` and self-conditioning no intermediate head is computed."""
        x = self.specaug(self.cmvn(feats), feat_lens)
        return encode_interctc(self.encoder, x, feat_lens, self.ctc_head, self.interctc_layers, self.cond_proj, collect)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, lens, _ = self._encode(feats, feat_lens, collect=False)
        return h, lens


@MODELS.register("ctc")
class CTCModel(CTCEncoderMixin, ASRModel):
    """Encoder + linear CTC head; optionally Intermediate CTC and self-conditioning (see the module docstring)."""

    Config = CTCModelConfig
    methods = ("greedy", "beam")

    def __init__(
        self,
        vocab_size: int,
        encoder: Encoder,
        specaug: SpecAugment,
        input_dim: int = NUM_MEL_BINS,
        interctc_layers: Sequence[int] = (),
        interctc_weight: float = 0.0,
        self_condition: bool = False,
    ) -> None:
        super().__init__()
        self._init_ctc_encoder(vocab_size, input_dim, encoder, specaug, interctc_layers, interctc_weight, self_condition)

    @classmethod
    def from_config(cls, cfg: CTCModelConfig, vocab_size: int) -> "CTCModel":
        return cls(
            vocab_size,
            Encoder.from_config(cfg.input_dim, cfg.encoder),
            build_specaug(cfg.specaug),
            cfg.input_dim,
            cfg.interctc_layers,
            cfg.interctc_weight,
            cfg.self_condition,
        )

    def ctc_log_probs(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) fbank, (B,) -> CTC log posteriors (B, T', V), valid frames (B,)."""
        h, lens = self.encode(feats, feat_lens)
        return self.ctc_head(h).log_softmax(-1), lens

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, LossTerm]:
        """``batch``: feats (B, T, D), feat_lens (B,), tokens (B, L) padded with -1, token_lens (B,)."""
        h, lens, inter = self._encode(batch["feats"], batch["feat_lens"], collect=True)
        tokens, token_lens = batch["tokens"], batch["token_lens"]
        return ctc_terms(self.ctc_head(h).log_softmax(-1), lens, inter, tokens, token_lens, self.interctc_weight)

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
        raise ValueError(f"unknown CTC decoding method {opts.method!r}; valid: {', '.join(self.methods)}")
