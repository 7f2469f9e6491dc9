"""Imputer ASR (Chan, Saharia, Hinton, Norouzi & Jaitly, 2020, "Imputer: Sequence Modelling via Imputation and
Dynamic Programming", arXiv:2002.08926).

A frame-level model conditioned on a partially observed alignment. The speech encoder (the same Conformer/
Transformer ``Encoder`` as CTC) runs on fbank; the alignment (one symbol per subsampled frame: blank, a token, or
``<mask>`` for unobserved) is embedded and added to the subsampled frames through the encoder's layer hook at
``i = 0``, before the first block; a linear head gives per-frame distributions over the vocabulary incl. blank.

Training (the imputation objective with the paper's dynamic-programming loss):

1. expert alignment: the CTC forced alignment of the reference under a trained CTC model's posteriors (the
   ``teacher`` model file); with no teacher, the model's own all-masked pass (no gradient, clean features) aligns
   (self-alignment: a learner roll-in instead of the paper's expert one; noisier early in training, no second model);
   utterances with too few frames for their transcript get no alignment and nothing observed;
2. block masking of that alignment (``narspeech.nat.imputation.block_mask``);
3. loss "imputer": -log of the sum over the reference's alignments that agree with the observed frames
   (``imputation_loss``), summed over frames and averaged over utterances like ``ctc_loss``;
   optionally "ctc": plain CTC of an all-masked pass, weighted ``ctc_weight`` (a second encoder pass per step), or
   ``full_mask_prob``: that share of the batch's utterances fully masked in the one imputation pass (their
   imputation loss is then plain CTC), which trains the state greedy and block decoding start from at no extra cost.

Starting point: ``train.init_from`` a CTC-family model file (same encoder options) loads its encoder and
``ctc_head``; the alignment embedding it lacks starts at zero (``init_missing``), so the all-masked pass is exactly
that model at step 0 and self-alignment needs no teacher and no teacher-aligned stage.

Encoder options as in conf ``ctc`` (``narspeech.asr.ctc``), on the imputation pass: ``interctc_layers`` add the
imputation loss of the shared head after the encoder's norm at those blocks ("interimputer", the imputer share
split ``(1 - w) * imputer + w * mean(interimputer)``: Intermediate CTC with the same observed frames), and
``self_condition`` adds the projected posteriors of those heads back to the hidden states, in every pass
(training, the all-masked one, and each pass of block decoding).

Decoding (``ASRDecodeOptions.method``): "greedy" = one pass with every frame masked, argmax per frame, CTC collapse;
"refine" = block decoding in B = ``opts.iterations`` passes (train with ``block_size`` equal to the B you decode
with): the CMVN/subsampling front end runs once, the blocks after the hook at ``i = 0`` once per pass.

Global CMVN and SpecAugment live inside the model, as in ``CTCModel``; the teacher is only read in training and is
never part of the model's weights, so an Imputer model file decodes without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from narspeech.asr.base import ASRDecodeOptions, ASRModel
from narspeech.asr.ctc import SpecAugConfig, build_specaug, check_interctc
from narspeech.audio.features import NUM_MEL_BINS, GlobalCMVN, SpecAugment
from narspeech.nat.ctc import ctc_collapse, ctc_forced_align_batch, ctc_loss
from narspeech.nat.imputation import block_decode, block_mask, imputation_loss
from narspeech.nn.encoder import Encoder, EncoderConfig
from narspeech.nn.mask import make_pad_mask
from narspeech.registry import MODELS
from narspeech.text.tokenizer import BLANK_ID, MASK_ID
from narspeech.train.loss import LossTerm

# Seed of the block mask drawn for validation losses (eval mode), so epochs are compared on the same masks.
VALID_MASK_SEED = 1234


@dataclass
class ImputerConfig:
    input_dim: int = NUM_MEL_BINS
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    teacher: str = ""  # trained CTC model file giving the expert alignments ("" = self-alignment by the model itself)
    block_size: int = 8  # B of the training block masking; decode "refine" with iterations = B
    ctc_weight: float = 0.0  # w: loss (1 - w) * imputer + w * CTC of an all-masked pass (0 = no extra pass)
    # p: an utterance of the batch has every frame masked with probability p (else the block masking's count): its
    # imputation loss is then plain CTC, so the all-masked state is trained in the same pass (see ``block_mask``)
    full_mask_prob: float = 0.0
    # encoder options of conf ``ctc``: the imputation loss also at these 1-based blocks (shared head), its share
    # split (1 - interctc_weight) * imputer + interctc_weight * mean(interimputer); self-conditioning on them
    interctc_layers: list[int] = field(default_factory=list)
    interctc_weight: float = 0.0
    self_condition: bool = False


@MODELS.register("imputer")
class ImputerModel(ASRModel):
    """Encoder + alignment embedding (added at the encoder hook ``i = 0``) + per-frame head (see the module docstring)."""

    Config = ImputerConfig
    methods = ("greedy", "refine")

    def __init__(
        self,
        vocab_size: int,
        encoder: Encoder,
        specaug: SpecAugment,
        input_dim: int = NUM_MEL_BINS,
        teacher: str = "",
        block_size: int = 8,
        ctc_weight: float = 0.0,
        full_mask_prob: float = 0.0,
        interctc_layers: tuple[int, ...] | list[int] = (),
        interctc_weight: float = 0.0,
        self_condition: bool = False,
    ) -> None:
        super().__init__()
        check_interctc(len(encoder.layers), interctc_layers, interctc_weight, self_condition)
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1), got {ctc_weight}")
        if not 0.0 <= full_mask_prob <= 1.0:
            raise ValueError(f"full_mask_prob must be in [0, 1], got {full_mask_prob}")
        if vocab_size <= MASK_ID:
            raise ValueError(f"vocab_size {vocab_size} has no <mask> symbol (id {MASK_ID})")
        self.vocab_size = vocab_size
        self.cmvn = GlobalCMVN(input_dim)
        self.specaug = specaug
        self.encoder = encoder
        self.align_embed = nn.Embedding(vocab_size, encoder.d_model)
        # named as CTCModel's head (same role: per-frame distributions incl. blank, CTC-collapsed), so train.init_from
        # a CTC-family model file starts this one from its encoder *and* head
        self.ctc_head = nn.Linear(encoder.d_model, vocab_size)
        self.register_load_state_dict_pre_hook(_rename_old_head)
        self.teacher = teacher
        self.block_size = block_size
        self.ctc_weight = ctc_weight
        self.full_mask_prob = full_mask_prob
        self.interctc_layers = tuple(interctc_layers)
        self.interctc_weight = interctc_weight
        self.cond_proj = nn.Linear(vocab_size, encoder.d_model) if self_condition else None
        # A plain dict, not a submodule: the teacher stays out of state_dict(), parameters(), .to() and .train().
        self._teacher_cache: dict[str, nn.Module] = {}

    @classmethod
    def from_config(cls, cfg: ImputerConfig, vocab_size: int) -> "ImputerModel":
        return cls(
            vocab_size,
            Encoder.from_config(cfg.input_dim, cfg.encoder),
            build_specaug(cfg.specaug),
            cfg.input_dim,
            cfg.teacher,
            cfg.block_size,
            cfg.ctc_weight,
            cfg.full_mask_prob,
            cfg.interctc_layers,
            cfg.interctc_weight,
            cfg.self_condition,
        )

    def init_missing(self, names: list[str]) -> None:
        """Called by the trainer after ``train.init_from`` with the tensors the model file lacked. From a CTC-family
        model (encoder + ``ctc_head``) only the alignment embedding is new: it starts at zero, so the all-masked pass
        starts as that CTC model's pass (and self-alignment as its forced alignment) instead of shifted by a random
        vector per symbol."""
        if "align_embed.weight" in names:
            with torch.no_grad():
                self.align_embed.weight.zero_()

    # ---- model passes -----------------------------------------------------------------------------------
    def _num_frames(self, feats: torch.Tensor) -> int:
        """Subsampled frames T' of a padded batch (what the alignment tensors are sized to)."""
        return int(self.encoder.subsampling.output_lengths(torch.tensor(feats.size(1))).clamp_min(0))

    def _intermediate(self, i: int, h: torch.Tensor, inter: list[torch.Tensor] | None) -> torch.Tensor:
        """After block ``i`` (1-based) of a pass: at an intermediate layer, the shared head's logits on the normed
        states (appended to ``inter`` when given) and, with self-conditioning, ``h`` plus their projected softmax."""
        if i not in self.interctc_layers or (inter is None and self.cond_proj is None):
            return h
        logits = self.ctc_head(self.encoder.norm(h))
        if inter is not None:
            inter.append(logits)
        return h + self.cond_proj(logits.softmax(-1)) if self.cond_proj is not None else h

    def _frames(
        self, x: torch.Tensor, feat_lens: torch.Tensor, alignment: torch.Tensor | None, collect: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """One full pass on normalized features ``x`` (B, T, D), ``feat_lens`` (B,) given ``alignment`` (B, T')
        (``<mask>`` where unobserved; None = all masked) -> encoder output (B, T', d), valid frames (B,), and (with
        ``collect``) the intermediate head's logits (B, T', V) per ``interctc_layers`` block."""
        inter: list[torch.Tensor] | None = [] if collect else None

        def hook(i: int, h: torch.Tensor, lens: torch.Tensor) -> torch.Tensor | None:
            if i != 0:
                return self._intermediate(i, h, inter)
            a = alignment if alignment is not None else torch.full(h.shape[:2], MASK_ID, dtype=torch.long, device=h.device)
            return h + self.align_embed(a)

        h, lens = self.encoder(x, feat_lens, hook)
        return h, lens, inter or []

    def _front(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The part of a pass that does not depend on the alignment: CMVN, subsampling, positional encoding (what
        ``Encoder.forward`` computes before its hook at ``i = 0``) -> (B, T', d), valid frames (B,)."""
        h, lens = self.encoder.subsampling(self.cmvn(feats), feat_lens)
        return self.encoder.pos_enc(h), lens

    def _blocks(self, h0: torch.Tensor, pad_mask: torch.Tensor | None, alignment: torch.Tensor) -> torch.Tensor:
        """The rest of ``Encoder.forward`` after its hook at ``i = 0``: ``h0`` from ``_front`` (B, T', d) plus the
        alignment embedding, the blocks, the final norm -> (B, T', d). ``pad_mask`` (B, T') True at padding, or None
        when nothing is padded (as in ``Encoder.forward``)."""
        h = h0 + self.align_embed(alignment)
        for i, layer in enumerate(self.encoder.layers, 1):
            h = self._intermediate(i, layer(h, pad_mask), None)
        return self.encoder.norm(h)

    def _decode_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T', d) -> log-probs (B, T', V) with ``<mask>`` excluded: a frame fixed to it would read as unobserved."""
        logits = self.ctc_head(h).float()
        logits[..., MASK_ID] = float("-inf")
        return logits.log_softmax(-1)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The all-masked pass: (B, T, D) fbank, (B,) -> (B, T', d), valid frames (B,)."""
        h, lens, _ = self._frames(self.cmvn(feats), feat_lens, None)
        return h, lens

    # ---- expert alignments ------------------------------------------------------------------------------
    def _load_teacher(self, device: torch.device) -> nn.Module:
        """The teacher model on ``device``, eval mode, loaded on first use (weights_only)."""
        from narspeech.train.checkpoint import CheckpointError
        from narspeech.asr.task import load_asr_model

        t = self._teacher_cache.get("model")
        if t is None:
            path = self.teacher
            if not Path(path).is_file():
                raise ValueError(f"imputer teacher {path}: no such model file (train the CTC model first)")
            try:
                t, tok, _ = load_asr_model(path)
            except CheckpointError as e:
                raise ValueError(f"imputer teacher {path}: {e}") from None
            if not callable(getattr(t, "ctc_log_probs", None)):
                raise ValueError(f"imputer teacher {path}: {type(t).__name__} has no CTC posteriors (ctc_log_probs)")
            if tok.vocab_size != self.vocab_size:
                raise ValueError(
                    f"imputer teacher {path}: vocabulary of {tok.vocab_size} symbols, this model has {self.vocab_size}"
                )
            t.eval().requires_grad_(False)
            self._teacher_cache["model"] = t
        return t.to(device)

    @torch.no_grad()
    def _expert_alignment(
        self, feats: torch.Tensor, feat_lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor, num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forced alignment of each reference under the teacher's (or the model's own all-masked) CTC posteriors.

        ``feats`` (B, T, D) raw fbank, ``feat_lens`` (B,), ``tokens`` (B, L) padded with -1, ``token_lens`` (B,),
        ``num_frames`` T' -> alignment (B, T') (blank at padding), aligned (B,) bool (False: too few frames).
        """
        if self.teacher:
            log_probs, lens = self._load_teacher(feats.device).ctc_log_probs(feats, feat_lens)
            expected = self.encoder.subsampling.output_lengths(feat_lens).clamp_min(0)
            if log_probs.size(-1) != self.vocab_size or not torch.equal(lens, expected):
                raise ValueError(
                    f"imputer teacher {self.teacher}: gives {log_probs.size(-1)} classes x {lens.tolist()} frames, "
                    f"this model needs {self.vocab_size} x {expected.tolist()}"
                )
        else:
            h, lens = self.encode(feats, feat_lens)  # clean features: SpecAugment only perturbs the trained pass
            log_probs = self.ctc_head(h).log_softmax(-1)
        # an utterance that cannot be aligned (more tokens + repeats than frames) is left unobserved
        return ctc_forced_align_batch(log_probs, lens, tokens, token_lens, BLANK_ID, num_frames)

    # ---- training -----------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, LossTerm]:
        """``batch``: feats (B, T, D), feat_lens (B,), tokens (B, L) padded with -1, token_lens (B,).

        Masks are random in training and drawn from a fixed seed in eval mode (comparable validation losses)."""
        feats, feat_lens, tokens, token_lens = batch["feats"], batch["feat_lens"], batch["tokens"], batch["token_lens"]
        num_frames = self._num_frames(feats)
        alignment, aligned = self._expert_alignment(feats, feat_lens, tokens, token_lens, num_frames)
        lens = self.encoder.subsampling.output_lengths(feat_lens).clamp_min(0)
        gen = None
        if not self.training:
            gen = torch.Generator(device=feats.device).manual_seed(VALID_MASK_SEED)
        masked = block_mask(lens, num_frames, self.block_size, gen, self.full_mask_prob)
        observed = ~masked & aligned.unsqueeze(1) & ~make_pad_mask(lens, num_frames)
        x = self.specaug(self.cmvn(feats), feat_lens)
        h, lens, inter = self._frames(x, feat_lens, torch.where(observed, alignment, MASK_ID), collect=True)
        log_probs = self.ctc_head(h).log_softmax(-1)
        w = self.ctc_weight
        wi = self.interctc_weight if inter else 0.0
        imputer = imputation_loss(log_probs, lens, tokens, token_lens, alignment, observed, BLANK_ID)
        terms = {"imputer": LossTerm(imputer, (1.0 - w) * (1.0 - wi))}
        if inter:
            losses = [imputation_loss(z.log_softmax(-1), lens, tokens, token_lens, alignment, observed, BLANK_ID) for z in inter]
            terms["interimputer"] = LossTerm(torch.stack(losses).mean(), (1.0 - w) * wi)
        if w > 0.0:
            h_all, _, _ = self._frames(x, feat_lens, None)
            terms["ctc"] = LossTerm(ctc_loss(self.ctc_head(h_all).log_softmax(-1), lens, tokens, token_lens), w)
        return terms

    # ---- decoding -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def infer(self, feats: torch.Tensor, feat_lens: torch.Tensor, opts: ASRDecodeOptions = ASRDecodeOptions()) -> list[list[int]]:
        """``feats`` (B, T, D) raw fbank, ``feat_lens`` (B,) valid frames -> token ids per utterance."""
        if opts.method == "greedy":
            h, lens = self.encode(feats, feat_lens)
            return ctc_collapse(self._decode_log_probs(h).argmax(-1), lens, BLANK_ID)
        if opts.method == "refine":
            if opts.iterations < 1:
                raise ValueError(f"iterations (the Imputer block size B) must be >= 1, got {opts.iterations}")
            h0, lens = self._front(feats, feat_lens)
            pad_mask: torch.Tensor | None = make_pad_mask(lens, h0.size(1))
            if not pad_mask.any():
                pad_mask = None  # same fast path as Encoder.forward

            def frame_log_probs(alignment: torch.Tensor) -> torch.Tensor:
                return self._decode_log_probs(self._blocks(h0, pad_mask, alignment))

            state = block_decode(frame_log_probs, lens, h0.size(1), opts.iterations, MASK_ID)
            return ctc_collapse(state.tokens, lens, BLANK_ID)
        raise ValueError(f"unknown Imputer decoding method {opts.method!r}; valid: {', '.join(self.methods)}")


def _rename_old_head(module, state_dict, prefix, *args) -> None:
    """Model files written before the per-frame head was renamed ``ctc_head`` (2026-12-04) name it ``head``."""
    for name in ("weight", "bias"):
        old = f"{prefix}head.{name}"
        if old in state_dict and f"{prefix}ctc_head.{name}" not in state_dict:
            state_dict[f"{prefix}ctc_head.{name}"] = state_dict.pop(old)
