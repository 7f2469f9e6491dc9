"""Mask-CTC (Higuchi et al., 2020, arXiv:2005.08700) and Improved Mask-CTC (Higuchi et al., 2021, arXiv:2010.13270).

Mask-CTC: an encoder with a linear CTC head, and a non-causal Transformer decoder (a conditional masked LM) that
cross-attends to the encoder output. Training: ``lambda * CTC + (1 - lambda) * MLM``, the MLM term a label-smoothed
cross-entropy on the masked positions only, the number of masks uniform in 1..L per utterance (as CMLM).
Decoding (``refine``): CTC greedy; each token's confidence is the highest frame posterior within its run of frames;
tokens below ``threshold`` become <mask>; K passes of the decoder each fill the most confident masks (about
n_masks / K per pass and utterance, the last pass fills the rest).

Improved Mask-CTC (``length_prediction``; the paper's Conformer encoder is ``encoder.block: conformer``): dynamic
length prediction. A linear classifier on the decoder states predicts, for each <mask>, how many tokens (0..
``max_span_length``) it stands for. It is trained on two corruptions of the reference (Sec. 3.2 of the paper):
deletion-simulated (uniform masking, then each run of consecutive masks merged into one mask whose target is the run
length) and insertion-simulated (masks inserted between tokens, target 0); loss ``lambda * CTC + (1 - lambda) * MLM
+ length_weight * LP``. Decoding (the paper's Algorithm 1, bounded to K iterations): in each iteration, merge each
run of masks into one mask, predict its length, expand it to that many masks (0 deletes it, more inserts), then
fill the most confident masks as above. Each iteration costs two decoder passes. The decode option
``length_steps`` N predicts lengths in the first N iterations only (the later ones fill masks, one pass each):
after the first pass the runs left lie between tokens the MLM has just filled in, a context the head is not
trained on, and re-predicting them there is what made following the head cost accuracy on the recipes' models
(measured in their RESULTS.md, "third redesign").

Token-level acoustic embeddings (``acoustic_embedding``; an option beyond both Mask-CTC papers, the idea taken from
CASS-NAT, Fan et al., 2021, arXiv:2010.14725, and Align-Refine, Chi et al., 2021, arXiv:2010.14233): a masked LM
that must find by cross-attention alone where in the audio a masked token lies learns slowly (measured on the mini
recipe: refine far worse than CTC greedy after a 6-minute budget). So every decoder input position also gets a
projection (Linear d + 1 -> d) of [the mean encoder state over the frames of the position, log(1 + their number)],
added to its token embedding. Each position carries a frame interval ``spans`` [start, end) (a token's frames in a
CTC path are one run); means come from running sums, one subtraction per position.
The frames of a token: in training, its frames in the CTC forced alignment of the reference under the model's own
(detached) CTC posteriors (an even split of the frames where no alignment exists); in decoding, its run of frames
in the CTC best path, kept when the token is masked. Blank frames belong to no token.
With length prediction a masked span may stand for more or fewer tokens than CTC emitted: CTC drops letters it
cannot hear (silent letters, one of two doubled letters), and a dropped letter's frames are blank frames beside its
neighbours. So there a merged mask owns the whole gap between its unmasked neighbours (blank frames included), the
CTC speech mass of that gap gives the length predictor a duration prior (``_length_logits``). After the prediction
the masks of a run keep their own frames; the masks a run gains are shared among its gaps of blank frames and its
masks' own frames in proportion to their frames, and the masks it loses are those with the fewest frames
(:func:`narspeech.nat.length.expand_runs`). Measured on the dev sets with the first form, which split every run's
gap evenly among its masks (also those that kept their length, and so in training): K=10 at threshold 0.999 masks
91-100 % of the tokens, and with CTC's counts kept everywhere the even shares cost FSDD 2.37 % WER against 0.74 %
with each token's own frames, the mini task 75.2 % against 33.8 %; the second form still split the gap of a run
whose length changed, and on the mini dev set 15 such changes at the first step cost 35 word errors. The MLM is
trained on both kinds of frames (``shared_span_prob`` of the runs of masks split the gap between their neighbours,
the others keep their own frames). Two more
controls, measured in the recipes' RESULTS.md: ``length_prior`` (the duration prior's mean from the speech mass, or
CTC's own count of tokens in the span) and the decoding option ``length_threshold`` (a run changes length only
where the head is that sure). And ``length_hypotheses``, a third copy for the length loss beyond the paper: the
model's own CTC hypothesis of the batch, its least confident tokens masked as decoding masks them, each merged run's
target the number of reference tokens it stands for in the edit-distance alignment of the hypothesis to the
reference. The paper's two copies mask at random, mostly where CTC is right; decoding masks where CTC is unsure,
and that is where it drops and inserts tokens.
``mlm_hypotheses`` (any Mask-CTC model, beyond the papers) does the same for the MLM: a second MLM copy, the
model's CTC hypothesis with its least confident tokens masked and CTC's frames for every token, the targets the
reference tokens aligned to the masks (none at inserted tokens). The reference copy's unmasked context and frames
are always right; in decoding the context is CTC's and the frames are CTC's best path's, wrong where CTC is.
Measured on the tone corpus of the tests (with the first form of the option, the mean alone): "refine" first
reached CER 0 after 18 epochs with it, 117 without (CTC greedy: 18 and 20); the test's 30-epoch run passes with
the frame-count input too. Its batch-1 decoder cost grows by a few percent (the pooling and one Linear).
``mlm_deletion`` (with ``mlm_hypotheses``, beyond the papers): the MLM may fill a mask with "no token" (the blank
id, which the decoder otherwise never predicts), and decoding deletes the positions so filled. The hypothesis
copy trains it: the inserted tokens among its masks get the blank id as target instead of no loss. Why: on the
mini task most of the errors left after CTC greedy are inserted tokens of low confidence (a repeated "men", "g"
in "baggs", "re" before "rabbit"), which a fixed-length decoder can only replace; in training mode (SpecAugment,
dropout) the CTC head of a model that fits its training set still inserts about 1 % of the tokens. Where the
length head merges a run of masks and predicts its length from the decoder state of one mask, this decides per
masked token, in the same softmax as the tokens. It does not work yet (egs/mini/asr1/RESULTS.md, "The whole family
on 6,000 utterances"): the inserted tokens are 1.2 % of the hypothesis copy's masks, and the trained decoder ranks
the inserted masks above the others (AUC 0.94) but gives "no token" at most about 0.1, so the argmax never
deletes, and every lower ``deletion_threshold`` (decode option) deleted more right tokens than inserted ones;
masking fewer tokens (threshold 0.7: 40 % of the masks inserted) drops the AUC to 0.67 (RESULTS.md, "Reruns").

Encoder options as in conf ``ctc`` (:func:`narspeech.asr.ctc.encode_interctc`; ESPnet's Mask-CTC takes the same):
Intermediate CTC at ``interctc_layers`` with the shared CTC head, the CTC share split ``lambda * ((1 - w) * CTC +
w * mean(InterCTC))``, and ``self_condition`` (SC-CTC's projected posteriors added back to the hidden states), so
that refinement starts from a self-conditioned CTC's tokens.

All decoding is batched with padding: rows with different lengths and mask counts share every decoder pass; the
encoder runs once, and a batch without masks costs no decoder pass. The length-prediction methods (span-length
head, its reference spans, the decoding step that resizes masked spans) are in :mod:`narspeech.asr.mask_ctc_length`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from narspeech.asr.base import ASRDecodeOptions, ASRModel
from narspeech.asr.ctc import CTCEncoderMixin, SpecAugConfig, build_specaug, ctc_terms
from narspeech.audio.features import NUM_MEL_BINS, SpecAugment
from narspeech.asr.mask_ctc_length import FrameSums, LengthPredictionMixin
from narspeech.nat.ctc import ctc_greedy, ctc_prefix_beam_search, ctc_tokens_with_frames, token_spans
from narspeech.nat.length import (
    IGNORE,
    PAD_ID,
    delete_positions,
    hypothesis_token_targets,
    length_training_inputs,
    masked_run_spans,
)
from narspeech.nat.refine import fill_most_confident, lowest_scores_mask, refine, uniform_mask
from narspeech.nn.decoder import DecoderConfig, TransformerDecoder
from narspeech.nn.encoder import Encoder, EncoderConfig
from narspeech.nn.mask import make_pad_mask
from narspeech.registry import MODELS
from narspeech.text.tokenizer import BLANK_ID, MASK_ID, SOS_EOS_ID
from narspeech.train.loss import LossTerm, label_smoothing_kl

# ids the decoder never sees as targets: never filled in, whatever an under-trained decoder scores them
NEVER_PREDICTED = (BLANK_ID, MASK_ID, SOS_EOS_ID)
METHODS = ("greedy", "beam", "refine")
LENGTH_PRIOR_BETA = 4.0  # initial sharpness of the span-length duration prior (see MaskCTCModel._length_logits)
LENGTH_PRIORS = ("speech", "ctc")


class MaskCTCState(NamedTuple):
    """:class:`narspeech.nat.refine.RefineState` (what ``refine`` reads: ``masked``, ``passes``) plus the frame
    interval of each position, which must follow the tokens when length prediction merges and expands masks."""

    tokens: torch.Tensor  # (B, L) current ids; masked positions hold MASK_ID
    lens: torch.Tensor  # (B,) valid positions
    masked: torch.Tensor  # (B, L) bool, True where the position is still to be predicted (never at padding)
    remaining: torch.Tensor  # (B,) passes left for this row
    spans: torch.Tensor | None  # (B, L, 2) [start, end) encoder frames of each position; None without the option
    passes: int = 0  # decoder iterations done so far


@dataclass
class MaskCTCConfig:
    input_dim: int = NUM_MEL_BINS
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)  # non-causal; d_model is the encoder's
    ctc_weight: float = 0.3  # lambda in lambda * CTC + (1 - lambda) * MLM
    lsm_weight: float = 0.1  # label smoothing of the MLM cross-entropy
    length_prediction: bool = False  # Improved Mask-CTC: dynamic length prediction
    length_weight: float = 0.1  # weight of the length-prediction loss (added to the CTC/MLM mix)
    max_span_length: int = 50  # length classes 0..max_span_length (longer training spans are left out)
    acoustic_embedding: bool = False  # add pooled encoder states of each token's frames to its decoder input
    # with length prediction and acoustic embeddings: the share of the MLM's runs of masks trained on even shares of
    # the gap between their neighbours (what the second form of decoding gave the masks of a span whose length
    # changed) instead of their own frames (what decoding gives every mask that was there before the prediction)
    shared_span_prob: float = 0.3
    # the mean of the span-length prior (see MaskCTCModel._length_logits): "speech", the span's share of the
    # utterance's tokens by CTC speech mass; "ctc", how many tokens the model's own CTC best path starts in its frames
    length_prior: str = "speech"
    # with length prediction: a third copy for the length loss, the model's own (detached) CTC hypothesis of the
    # batch with its least confident tokens masked as in decoding (how many: uniform in 1..its length), each run's
    # target the number of reference tokens it stands for in the hypothesis' alignment to the reference
    # (narspeech.nat.length.hypothesis_length_targets): the head learns where CTC really miscounts
    length_hypotheses: bool = False
    # a second MLM copy (beyond the papers): the model's own (detached) CTC hypothesis of the batch with its least
    # confident tokens masked as in decoding (how many: uniform in 1..its length), with decoding's frames for each
    # token, the targets the reference tokens aligned to the masks (narspeech.nat.length.hypothesis_token_targets):
    # the reference copy's context and frames are always right, decoding's are CTC's
    mlm_hypotheses: bool = False
    # with mlm_hypotheses (beyond the papers): the MLM may fill a mask with "no token" (the blank id), which deletes
    # the position; trained at the hypothesis copy's inserted tokens (targets: blank instead of no loss)
    mlm_deletion: bool = False
    # encoder options of conf ``ctc`` (narspeech.asr.ctc): Intermediate CTC at these 1-based layers (shared CTC
    # head) and self-conditioning; the CTC share lambda is split (1 - w) * CTC + w * mean(InterCTC), as in ESPnet
    interctc_layers: list[int] = field(default_factory=list)
    interctc_weight: float = 0.0
    self_condition: bool = False


@MODELS.register("mask_ctc")
class MaskCTCModel(LengthPredictionMixin, CTCEncoderMixin, ASRModel):
    """Encoder + CTC head + non-causal decoder (+ span-length classifier); see the module docstring."""

    Config = MaskCTCConfig
    methods = METHODS

    def __init__(
        self,
        vocab_size: int,
        encoder: Encoder,
        specaug: SpecAugment,
        decoder: TransformerDecoder,
        input_dim: int = NUM_MEL_BINS,
        ctc_weight: float = 0.3,
        lsm_weight: float = 0.1,
        length_prediction: bool = False,
        length_weight: float = 0.1,
        max_span_length: int = 50,
        acoustic_embedding: bool = False,
        shared_span_prob: float = 0.3,
        length_prior: str = "speech",
        length_hypotheses: bool = False,
        mlm_hypotheses: bool = False,
        mlm_deletion: bool = False,
        interctc_layers: tuple[int, ...] | list[int] = (),
        interctc_weight: float = 0.0,
        self_condition: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in (0, 1) (CTC gives the initial tokens, MLM refines them), got {ctc_weight}")
        if not 0.0 <= lsm_weight < 1.0:
            raise ValueError(f"lsm_weight must be in [0, 1), got {lsm_weight}")
        if length_prediction and length_weight <= 0.0:
            raise ValueError(f"length_weight must be > 0 with length_prediction, got {length_weight}")
        if max_span_length < 1:
            raise ValueError(f"max_span_length must be >= 1, got {max_span_length}")
        if not 0.0 <= shared_span_prob <= 1.0:
            raise ValueError(f"shared_span_prob must be a probability in [0, 1], got {shared_span_prob}")
        if length_prior not in LENGTH_PRIORS:
            raise ValueError(f"unknown length_prior {length_prior!r}; valid: {', '.join(LENGTH_PRIORS)}")
        if length_hypotheses and not length_prediction:
            raise ValueError("length_hypotheses trains the length head: it needs length_prediction")
        if mlm_deletion and not mlm_hypotheses:
            raise ValueError("mlm_deletion learns from the hypothesis copy's inserted tokens: it needs mlm_hypotheses")
        if decoder.causal:
            raise ValueError("decoder must be non-causal (a conditional masked LM)")
        if vocab_size <= max(NEVER_PREDICTED):
            raise ValueError(f"vocab_size {vocab_size} leaves no room for tokens after the reserved ids")
        self._init_ctc_encoder(vocab_size, input_dim, encoder, specaug, interctc_layers, interctc_weight, self_condition)
        self.decoder = decoder
        self.ctc_weight = ctc_weight
        self.lsm_weight = lsm_weight
        self.length_weight = length_weight
        self.max_span_length = max_span_length
        self.shared_span_prob = shared_span_prob
        self.length_prior = length_prior
        self.length_hypotheses = length_hypotheses
        self.mlm_hypotheses = mlm_hypotheses
        self.mlm_deletion = mlm_deletion
        self.length_head = nn.Linear(encoder.d_model, max_span_length + 1) if length_prediction else None
        if self.length_head is not None and acoustic_embedding:
            # zero: the length predictor starts as the duration prior alone (see _length_logits), and the head
            # learns corrections to it rather than first fitting the class frequencies of the early updates
            nn.init.zeros_(self.length_head.weight)
            nn.init.zeros_(self.length_head.bias)
        # log of the prior's sharpness beta (log-density -beta (k - lambda)^2 / 2), learned; starts at beta = 4
        # (sigma 0.5): the prior rounds to the right length for 91 % of ljsynth's simulated masks
        self.length_prior_log_beta = (
            nn.Parameter(torch.tensor(math.log(LENGTH_PRIOR_BETA))) if self.length_head is not None and acoustic_embedding else None
        )
        # input: the mean encoder state over the position's frames and log(1 + its frame count) (how much audio)
        self.acoustic_proj = nn.Linear(encoder.d_model + 1, encoder.d_model) if acoustic_embedding else None
        if self.acoustic_proj is not None:
            # zero: the model starts as plain Mask-CTC, and the pooled vectors enter only as the projection learns
            # them, by which time the CTC alignments they come from mean something (early forced alignments of
            # near-uniform posteriors are arbitrary); Adam moves a zero weight as fast as a random one
            nn.init.zeros_(self.acoustic_proj.weight)
            nn.init.zeros_(self.acoustic_proj.bias)
        never = torch.zeros(vocab_size).index_fill_(0, torch.tensor(NEVER_PREDICTED), float("-inf"))
        self.register_buffer("never_predicted", never, persistent=False)  # added to the decoder's logits
        # with mlm_deletion the blank id is predicted too: "no token here" (the position is deleted)
        self.register_buffer("never_predicted_deleting", never.index_fill(0, torch.tensor([BLANK_ID]), 0.0), persistent=False)

    @classmethod
    def from_config(cls, cfg: MaskCTCConfig, vocab_size: int) -> "MaskCTCModel":
        return cls(
            vocab_size,
            Encoder.from_config(cfg.input_dim, cfg.encoder),
            build_specaug(cfg.specaug),
            TransformerDecoder.from_config(vocab_size, cfg.encoder.d_model, cfg.decoder, causal=False),
            cfg.input_dim,
            cfg.ctc_weight,
            cfg.lsm_weight,
            cfg.length_prediction,
            cfg.length_weight,
            cfg.max_span_length,
            cfg.acoustic_embedding,
            cfg.shared_span_prob,
            cfg.length_prior,
            cfg.length_hypotheses,
            cfg.mlm_hypotheses,
            cfg.mlm_deletion,
            cfg.interctc_layers,
            cfg.interctc_weight,
            cfg.self_condition,
        )

    # ------------------------------------------------------------------------------------------------ training

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, LossTerm]:
        """``batch``: feats (B, T, D), feat_lens (B,), tokens (B, L) padded with -1, token_lens (B,).

        Terms: ``ctc`` (and ``interctc`` with intermediate layers), ``mlm`` (per utterance, summed over its masked
        tokens), and with length prediction ``length`` (per utterance, summed over the masks of its two corrupted
        copies)."""
        h, h_lens, inter = self._encode(batch["feats"], batch["feat_lens"], collect=True)
        tokens, token_lens = batch["tokens"], batch["token_lens"]
        B = tokens.size(0)
        log_probs = self.ctc_head(h).log_softmax(-1)
        terms = ctc_terms(log_probs, h_lens, inter, tokens, token_lens, self.interctc_weight, self.ctc_weight)

        target = tokens.clamp_min(PAD_ID)  # -1 padding -> a valid id; padding is never masked
        inp, masked = uniform_mask(target, token_lens, MASK_ID)
        spans = mlm_spans = cum = None
        if self.acoustic_proj is not None:
            spans = self.reference_spans(log_probs.detach(), h_lens, tokens, token_lens)
            cum = self._frame_sums(h, log_probs.detach(), h_lens, token_lens)
            # a mask's frames are its own (CTC's tokens keep theirs in decoding), but with length prediction some
            # runs of masks share the gap between their unmasked neighbours evenly, as after a length change
            mlm_spans = spans
            if self.length_head is not None:
                mlm_spans = masked_run_spans(spans, token_lens, masked, h_lens, self.shared_span_prob)
        logits = self.decoder(inp, token_lens.clamp_min(1), h, h_lens, self._acoustic_inputs(cum, mlm_spans))
        mlm = label_smoothing_kl(logits, target.masked_fill(~masked, IGNORE), self.lsm_weight)
        terms["mlm"] = LossTerm(mlm / B, 1.0 - self.ctc_weight)
        hyp = refs = None
        if self.mlm_hypotheses or self.length_hypotheses:
            hyp = ctc_tokens_with_frames(log_probs.detach(), h_lens, BLANK_ID)
            refs = [row[: int(n)] for row, n in zip(tokens.tolist(), token_lens.tolist())]
        if self.mlm_hypotheses:
            terms["mlm_hyp"] = LossTerm(self._hypothesis_mlm_loss(hyp, refs, h, h_lens, cum) / B, 1.0 - self.ctc_weight)

        if self.length_head is not None:
            inp, lens, tgt, lp_spans = length_training_inputs(
                target, token_lens, self.max_span_length, spans=spans, num_frames=h_lens
            )
            lp_cum = None if cum is None else FrameSums(*(torch.cat([x, x]) for x in cum))
            memory, memory_lens = torch.cat([h, h]), torch.cat([h_lens, h_lens])
            if self.length_hypotheses:
                third = self._hypothesis_length_inputs(hyp, refs, h_lens, cum)
                inp, tgt = _cat_padded(inp, third[0], PAD_ID), _cat_padded(tgt, third[2], IGNORE)
                lens = torch.cat([lens, third[1]])
                lp_spans = None if lp_spans is None else _cat_padded(lp_spans, third[3], 0)
                lp_cum = None if cum is None else FrameSums(*(torch.cat([x, y]) for x, y in zip(lp_cum, third[4])))
                memory, memory_lens = torch.cat([memory, h]), torch.cat([memory_lens, h_lens])
            extra = self._acoustic_inputs(lp_cum, lp_spans)
            states = self.decoder.states(inp, lens.clamp_min(1), memory, memory_lens, extra)
            lp = nn.functional.cross_entropy(
                self._length_logits(states, lp_spans, lp_cum).flatten(0, 1), tgt.flatten(), ignore_index=IGNORE, reduction="sum"
            )
            terms["length"] = LossTerm(lp / B, self.length_weight)
        return terms

    def _hypothesis_mlm_loss(
        self,
        hyp: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        refs: list[list[int]],
        memory: torch.Tensor,
        lens: torch.Tensor,
        cum: "FrameSums | None",
    ) -> torch.Tensor:
        """The MLM loss (summed over the batch's masks) of the copy built as decoding builds its first pass.

        ``hyp`` what :func:`ctc_tokens_with_frames` gives for the batch's detached CTC posteriors, ``refs`` the B
        references, ``memory`` (B, T, d) the encoder output, ``lens`` (B,) its valid frames, ``cum`` its frame sums
        (None without acoustic embeddings). Each token keeps its CTC frames, as a mask does in decoding (also after
        a length step, :func:`narspeech.nat.length.expand_runs`, where the run kept its length)."""
        tokens, conf, hyp_lens, frame_token = hyp
        masked = lowest_scores_mask(conf, hyp_lens)
        target = hypothesis_token_targets(tokens, hyp_lens, masked, refs, BLANK_ID if self.mlm_deletion else None)
        if not bool((target != IGNORE).any()):  # CTC emits nothing yet (early training), or only insertions masked
            return memory.new_zeros(())
        spans = token_spans(frame_token, tokens.size(1)) if cum is not None else None
        inp = tokens.masked_fill(masked, MASK_ID)
        logits = self.decoder(inp, hyp_lens.clamp_min(1), memory, lens, self._acoustic_inputs(cum, spans))
        return label_smoothing_kl(logits, target, self.lsm_weight)

    # ------------------------------------------------------------------------------------------------ inference

    @torch.inference_mode()
    def infer(self, feats: torch.Tensor, feat_lens: torch.Tensor, opts: ASRDecodeOptions = ASRDecodeOptions()) -> list[list[int]]:
        """``feats`` (B, T, D) raw fbank, ``feat_lens`` (B,) valid frames -> token ids per utterance.

        ``greedy``: CTC best path; ``beam``: CTC prefix beam search; ``refine``: Mask-CTC (with length prediction
        when the model has it; ``opts.length_threshold``) in ``opts.iterations`` iterations, masking CTC tokens below
        ``opts.threshold``."""
        if opts.method not in METHODS:
            raise ValueError(f"unknown Mask-CTC decoding method {opts.method!r}; valid: {', '.join(METHODS)}")
        if opts.method == "refine" and opts.iterations < 1:
            raise ValueError(f"iterations must be >= 1 for refine, got {opts.iterations}")
        if opts.length_steps < 0:
            raise ValueError(f"length_steps must be >= 0 (0: every iteration), got {opts.length_steps}")
        h, h_lens = self.encode(feats, feat_lens)
        log_probs = self.ctc_head(h).log_softmax(-1)
        if opts.method == "greedy":
            return ctc_greedy(log_probs, h_lens, BLANK_ID)
        if opts.method == "beam":
            return [
                list(ctc_prefix_beam_search(lp[: int(n)], opts.beam_size, BLANK_ID)[0].tokens)
                for lp, n in zip(log_probs, h_lens)
            ]
        tokens, conf, lens, frame_token = ctc_tokens_with_frames(log_probs, h_lens, BLANK_ID)
        masked = (conf < opts.threshold) & ~make_pad_mask(lens, tokens.size(1))
        spans = token_spans(frame_token, tokens.size(1)) if self.acoustic_proj is not None else None
        state = self.refine_tokens(
            tokens.masked_fill(masked, MASK_ID), lens, masked, h, h_lens, opts.iterations, spans, log_probs,
            opts.length_threshold, opts.length_steps, opts.deletion_threshold,
        )
        return [row[: int(n)].tolist() for row, n in zip(state.tokens, state.lens)]

    @torch.inference_mode()
    def refine_tokens(
        self,
        tokens: torch.Tensor,
        lens: torch.Tensor,
        masked: torch.Tensor,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        iterations: int,
        spans: torch.Tensor | None = None,
        log_probs: torch.Tensor | None = None,
        length_threshold: float = 0.0,
        length_steps: int = 0,
        deletion_threshold: float = 0.0,
    ) -> MaskCTCState:
        """Iterative refinement of partly masked token sequences.

        ``tokens`` (B, L) ids with MASK_ID where ``masked`` (B, L) is True, ``lens`` (B,) valid tokens, ``memory``
        (B, T', d) encoder output, ``memory_lens`` (B,) valid frames, ``spans`` (B, L, 2) the [start, end) frames
        of each position in ``memory`` (exactly when the model has acoustic embeddings; a masked CTC token's are
        its run of frames), ``log_probs`` (B, T', V) the CTC log-posteriors of ``memory`` when the caller has them
        (computed here otherwise), ``length_threshold``: with length prediction, a run of masks changes its length
        only where the length head's probability for its prediction is at least this (0: always, as in the paper),
        ``length_steps``: with length prediction, only the first this many iterations predict lengths (0: all, as
        in the paper), ``deletion_threshold``: with ``mlm_deletion``, a mask is deleted where the decoder's
        probability of "no token" is at least this (0: where it is the most probable class; above 1: never)
        -> final state (no mask left in any row); ``state.passes`` counts iterations (one decoder pass each; two
        where lengths are predicted)."""
        if (spans is None) != (self.acoustic_proj is None):
            raise ValueError("spans (frames per position) must be given exactly when acoustic_embedding is on")
        remaining = torch.full_like(lens, iterations)
        state = MaskCTCState(tokens, lens, masked, remaining, spans)
        cum = None
        if spans is not None:
            if log_probs is None:
                log_probs = self.ctc_head(memory).log_softmax(-1)
            # the utterance's tokens for the duration prior: CTC's count (the reference's in training)
            cum = self._frame_sums(memory, log_probs, memory_lens)
        step = partial(self._fill_step, deletion_threshold=deletion_threshold)
        if self.length_head is not None:
            step = partial(
                self._length_step, length_threshold=length_threshold, length_steps=length_steps,
                deletion_threshold=deletion_threshold,
            )
        return refine(state, partial(step, memory=memory, memory_lens=memory_lens, cum=cum), iterations)

    def _fill_step(
        self,
        state: MaskCTCState,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        cum: "FrameSums | None",
        deletion_threshold: float = 0.0,
    ) -> MaskCTCState:
        """One mask-predict pass: each row fills ceil(masks left / passes left) of its masks, the most confident
        first, so the masks are spread evenly over the passes and the last pass fills all that remain. With
        ``mlm_deletion`` a mask whose probability of "no token" (the blank id) reaches ``deletion_threshold`` (0:
        beats every token) is deleted (the rows close up, the frames of the deleted positions then belong to no
        token); its confidence is that probability. The tokens are ranked by their softmax without the blank id,
        so a threshold above 1 decodes as the model without the option would."""
        extra = self._acoustic_inputs(cum, state.spans)
        logits = self.decoder(state.tokens, state.lens.clamp_min(1), memory, memory_lens, extra)
        conf, pred = (logits + self.never_predicted).log_softmax(-1).max(-1)
        if self.mlm_deletion:
            full = (logits + self.never_predicted_deleting).log_softmax(-1)
            blank = full[..., BLANK_ID]
            # the argmax rule: "no token" beats the best token in the softmax over both
            bar = full.index_fill(-1, torch.tensor([BLANK_ID], device=full.device), float("-inf")).amax(-1)
            if deletion_threshold > 0:
                bar = torch.full_like(blank, math.log(deletion_threshold))
            delete = blank >= bar
            pred = torch.where(delete, torch.full_like(pred, BLANK_ID), pred)
            conf = torch.where(delete, blank, conf)
        left = state.masked.sum(1)
        passes_left = state.remaining.clamp_min(1)
        num = torch.div(left + passes_left - 1, passes_left, rounding_mode="floor")
        tokens, masked = fill_most_confident(state.tokens, state.masked, pred, conf, num)
        lens, spans = state.lens, state.spans
        if self.mlm_deletion:
            deleted = state.masked & ~masked & (tokens == BLANK_ID)  # filled in this pass with "no token"
            if bool(deleted.any()):
                tokens, lens, masked, spans = delete_positions(deleted, lens, tokens, masked, spans)
        return state._replace(tokens=tokens, lens=lens, masked=masked, spans=spans, remaining=state.remaining - 1)

def _cat_padded(a: torch.Tensor, b: torch.Tensor, value: int) -> torch.Tensor:
    """Rows of ``a`` (B, L, *) then of ``b`` (B', L', *), padded with ``value`` to the wider of L, L'."""
    width = max(a.size(1), b.size(1))

    def pad(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.new_full((x.size(0), width - x.size(1), *x.shape[2:]), value)], 1)

    return torch.cat([pad(a), pad(b)])

