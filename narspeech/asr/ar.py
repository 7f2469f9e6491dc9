"""Joint CTC/attention encoder-decoder ASR: the autoregressive baseline the NAR models are measured against
(Kim, Hori & Watanabe, 2017, "Joint CTC-attention based end-to-end speech recognition using multi-task learning",
arXiv:1609.06773; Watanabe, Hori, Kim, Hershey & Hayashi, 2017, "Hybrid CTC/attention architecture for end-to-end
speech recognition", IEEE JSTSP 11(8)).

- Training: the shared Conformer/Transformer encoder with a linear CTC head, and a causal Transformer decoder
  over ``<sos> + y`` predicting ``y + <eos>`` with cross-attention to the encoder; loss
  ``lambda * CTC + (1 - lambda) * attention`` (the attention term label-smoothed, Szegedy et al., 2016).
- Decoding, batched over utterances with padding masks and an incremental (cached) decoder step:
  ``greedy`` (attention argmax) and ``beam``: all utterances x beam hypotheses in one batch; with
  ``ctc_weight > 0`` the joint score ``(1 - w) log p_att + w log p_ctc`` (Watanabe et al., 2017, Eq. 44-45), the CTC
  prefix score computed by :mod:`narspeech.nat.ctc_prefix_score` on the attention pre-beam only (ESPnet's partial
  scoring: CTC prefix scores for the whole vocabulary would cost V times more for candidates the beam never keeps).

Encoder options as in conf ``ctc`` (:func:`narspeech.asr.ctc.encode_interctc`; ESPnet's joint model takes the
same): Intermediate CTC at ``interctc_layers`` with the shared CTC head, the CTC share split ``lambda * ((1 - w) *
CTC + w * mean(InterCTC))``, and ``self_condition`` (SC-CTC's projected posteriors added back to the hidden states).

Global CMVN and SpecAugment live inside the model, so a checkpoint takes raw 80-dim fbank and needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from narspeech.asr.base import ASRDecodeOptions, ASRModel
from narspeech.asr.ctc import CTCEncoderMixin, SpecAugConfig, build_specaug, ctc_terms
from narspeech.audio.features import NUM_MEL_BINS, SpecAugment
from narspeech.nat.ctc_prefix_score import CTCPrefixScorer, CTCPrefixState
from narspeech.nn.decoder import DecoderConfig, TransformerDecoder
from narspeech.nn.encoder import Encoder, EncoderConfig
from narspeech.nn.mask import make_pad_mask
from narspeech.registry import MODELS
from narspeech.text.tokenizer import BLANK_ID, MASK_ID, SOS_EOS_ID
from narspeech.train.loss import LossTerm, label_smoothing_kl

# ESPnet's pre_beam_ratio: per hypothesis, the CTC prefix score is computed for the int(1.5 * beam) best attention
# candidates only (more cannot change the top-beam much; fewer starves the joint score of choices)
PRE_BEAM_RATIO = 1.5
# ids that are never a training target of the decoder: whatever mass an under-trained decoder puts on them is noise,
# and emitting them would only produce garbage text (the CTC prefix score of blank is -inf anyway)
NEVER_EMITTED = (BLANK_ID, MASK_ID)
DECODE_METHODS = ("greedy", "beam")


@dataclass
class ARConfig:
    input_dim: int = NUM_MEL_BINS
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)  # d_model is the encoder's
    ctc_weight: float = 0.3  # lambda in lambda * CTC + (1 - lambda) * attention (training only; decoding has its own)
    lsm_weight: float = 0.1  # label smoothing of the attention loss
    # encoder options of conf ``ctc`` (narspeech.asr.ctc): Intermediate CTC at these 1-based layers (shared CTC
    # head) and self-conditioning; the CTC share lambda is split (1 - w) * CTC + w * mean(InterCTC), as in ESPnet
    interctc_layers: list[int] = field(default_factory=list)
    interctc_weight: float = 0.0
    self_condition: bool = False


@dataclass(frozen=True)
class ARHypothesis:
    tokens: tuple[int, ...]  # token ids without <sos>/<eos>
    score: float  # search score: (1 - w) * att + w * ctc + length_bonus * (len(tokens) + 1)
    att: float  # attention log-probability of tokens + <eos> (teacher-forced, as forward() computes it)
    ctc: float  # CTC log-probability of tokens (0.0 when the search used no CTC)


@MODELS.register("ar")
class AttentionModel(CTCEncoderMixin, ASRModel):
    """Encoder + CTC head + causal Transformer decoder (see the module docstring)."""

    Config = ARConfig
    methods = DECODE_METHODS

    def __init__(
        self,
        vocab_size: int,
        encoder: Encoder,
        decoder: TransformerDecoder,
        specaug: SpecAugment,
        input_dim: int = NUM_MEL_BINS,
        ctc_weight: float = 0.3,
        lsm_weight: float = 0.1,
        interctc_layers: tuple[int, ...] | list[int] = (),
        interctc_weight: float = 0.0,
        self_condition: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1) (1 would leave the decoder untrained), got {ctc_weight}")
        if not 0.0 <= lsm_weight < 1.0:
            raise ValueError(f"lsm_weight must be in [0, 1), got {lsm_weight}")
        if not decoder.causal:
            raise ValueError("decoder must be causal (TransformerDecoder(causal=True)) for autoregressive decoding")
        if decoder.embed.embedding_dim != encoder.d_model:
            raise ValueError(f"decoder d_model {decoder.embed.embedding_dim} != encoder d_model {encoder.d_model}")
        self._init_ctc_encoder(vocab_size, input_dim, encoder, specaug, interctc_layers, interctc_weight, self_condition)
        self.decoder = decoder
        self.ctc_weight = ctc_weight
        self.lsm_weight = lsm_weight

    @classmethod
    def from_config(cls, cfg: ARConfig, vocab_size: int) -> "AttentionModel":
        return cls(
            vocab_size,
            Encoder.from_config(cfg.input_dim, cfg.encoder),
            TransformerDecoder.from_config(vocab_size, cfg.encoder.d_model, cfg.decoder, causal=True),
            build_specaug(cfg.specaug),
            cfg.input_dim,
            cfg.ctc_weight,
            cfg.lsm_weight,
            cfg.interctc_layers,
            cfg.interctc_weight,
            cfg.self_condition,
        )

    # ---- training -----------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, LossTerm]:
        """``batch``: feats (B, T, D), feat_lens (B,), tokens (B, L) padded with -1, token_lens (B,).

        Both terms are means over utterances of per-utterance sums (over frames for CTC, over the L + 1 output
        tokens for attention), so their scales match and ``ctc_weight`` means what it says.
        """
        h, lens, inter = self._encode(batch["feats"], batch["feat_lens"], collect=True)
        tokens, token_lens = batch["tokens"], batch["token_lens"]
        terms = ctc_terms(self.ctc_head(h).log_softmax(-1), lens, inter, tokens, token_lens, self.interctc_weight, self.ctc_weight)
        ys_in, ys_out = decoder_io(tokens, token_lens)
        logits = self.decoder(ys_in, token_lens + 1, h, lens)
        att = label_smoothing_kl(logits, ys_out, self.lsm_weight) / logits.size(0)
        return terms | {"att": LossTerm(att, 1.0 - self.ctc_weight)}

    def sequence_log_probs(self, h: torch.Tensor, lens: torch.Tensor, hyps: list[list[int]]) -> torch.Tensor:
        """Teacher-forced attention log-probability ``log p(y + <eos> | x)`` of one hypothesis per utterance.

        ``h`` (B, T, d) encoder output, ``lens`` (B,) valid frames, ``hyps`` B token lists -> (B,).
        """
        token_lens = torch.tensor([len(y) for y in hyps], device=h.device)
        tokens = torch.full((len(hyps), max(1, int(token_lens.max()))), -1, dtype=torch.long, device=h.device)
        for b, y in enumerate(hyps):
            tokens[b, : len(y)] = torch.tensor(y, dtype=torch.long)
        ys_in, ys_out = decoder_io(tokens, token_lens)
        logp = self.decoder(ys_in, token_lens + 1, h, lens).log_softmax(-1).float()
        tok_lp = logp.gather(-1, ys_out.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        return tok_lp.masked_fill(ys_out < 0, 0.0).sum(1)

    # ---- decoding -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def infer(self, feats: torch.Tensor, feat_lens: torch.Tensor, opts: ASRDecodeOptions = ASRDecodeOptions()) -> list[list[int]]:
        """``feats`` (B, T, D) raw fbank, ``feat_lens`` (B,) valid frames -> token ids per utterance."""
        if opts.method not in DECODE_METHODS:
            raise ValueError(f"unknown AR decoding method {opts.method!r}; valid: {', '.join(DECODE_METHODS)}")
        _check_options(opts)
        h, lens = self.encode(feats, feat_lens)
        if opts.method == "greedy":
            return self.greedy_search(h, lens, opts.max_len_ratio)
        return [list(nbest[0].tokens) if nbest else [] for nbest in self.beam_search(h, lens, opts)]

    def _max_lens(self, lens: torch.Tensor, ratio: float) -> torch.Tensor:
        if not ratio > 0:
            raise ValueError(f"max_len_ratio must be > 0, got {ratio}")
        return (lens.double() * ratio).long().clamp_min(1)  # as ESPnet: max(1, int(ratio * T))

    def _memory(
        self, h: torch.Tensor, lens: torch.Tensor, active: torch.Tensor
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
        """Decoder cross-attention keys/values of utterances ``active`` (A,), cut to their longest valid length, and
        the padding mask (A, T') (None when nothing is padded: the fused attention path)."""
        sub_lens = lens[active]
        T = int(sub_lens.max())
        pad = make_pad_mask(sub_lens, T)
        return self.decoder.memory_kv(h[active, :T]), (pad if bool(pad.any()) else None)

    def _restrict(self, logp: torch.Tensor, force_eos: torch.Tensor) -> torch.Tensor:
        """Next-token log-probs (N, V) with the never-emitted ids removed and, in rows ``force_eos`` (N,) (at the
        length limit), everything but <eos> removed. The remaining values are NOT renormalized: scores stay the
        model's log-probabilities."""
        never = torch.tensor(NEVER_EMITTED, device=logp.device)
        logp = logp.index_fill(1, never, float("-inf"))
        not_eos = torch.arange(logp.size(1), device=logp.device) != SOS_EOS_ID
        return logp.masked_fill(force_eos.unsqueeze(1) & not_eos, float("-inf"))

    @torch.inference_mode()
    def greedy_search(self, h: torch.Tensor, lens: torch.Tensor, max_len_ratio: float = 1.0) -> list[list[int]]:
        """Batched attention greedy search: ``h`` (B, T, d) encoder output, ``lens`` (B,) valid frames -> ids.

        One cached decoder step per output position for the rows still running; a row stops at <eos> or after
        ``max_len_ratio * lens`` tokens; finished rows leave the batch.
        """
        B = h.size(0)
        max_lens = self._max_lens(lens, max_len_ratio)
        out: list[list[int]] = [[] for _ in range(B)]
        active = torch.arange(B, device=h.device)
        mem_kv, mem_pad = self._memory(h, lens, active)
        ys = torch.full((B, 1), SOS_EOS_ID, dtype=torch.long, device=h.device)
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        for i in range(int(max_lens.max()) + 1):
            logp, cache = self.decoder.step(ys, mem_kv, mem_pad, cache)
            nxt = self._restrict(logp, i >= max_lens[active]).argmax(-1)
            ys = torch.cat([ys, nxt.unsqueeze(1)], dim=1)
            ended = nxt == SOS_EOS_ID
            if bool(ended.any()):
                for b, y in zip(active[ended].tolist(), ys[ended, 1:-1].tolist()):
                    out[b] = y
                keep = ~ended
                if not bool(keep.any()):
                    break
                active, ys, cache = active[keep], ys[keep], [(kk[keep], vv[keep]) for kk, vv in cache]
                mem_kv, mem_pad = self._memory(h, lens, active)
        return out

    @torch.inference_mode()
    def beam_search(self, h: torch.Tensor, lens: torch.Tensor, opts: ASRDecodeOptions) -> list[list[ARHypothesis]]:
        """Batched joint CTC/attention beam search: ``h`` (B, T, d) encoder output, ``lens`` (B,) valid frames ->
        per utterance up to ``beam_size`` finished hypotheses, best first (empty only if every hypothesis became
        impossible under CTC, e.g. more tokens than frames).

        All utterances x ``beam_size`` hypotheses are rows of one batch; each output position is one cached decoder
        step for all rows, a top-k over ``beam x candidates`` per utterance, and a reorder of the decoder cache (and
        CTC state) by the chosen parents. Candidates ending in <eos> are collected per utterance; the other slots
        carry on (a beam may run with fewer live hypotheses for a step, as in ESPnet). An utterance stops once it
        has ``beam_size`` finished hypotheses and none of its live ones can still beat the worst of them (scores
        only decrease, up to the length bonus), or at ``max_len_ratio * lens`` tokens, where <eos> is forced; its
        rows then leave the batch.
        """
        _check_options(opts)
        k, w, bonus = opts.beam_size, opts.ctc_weight, opts.length_bonus
        B, V, dev = h.size(0), self.vocab_size, h.device
        max_lens = self._max_lens(lens, opts.max_len_ratio)
        scorer = CTCPrefixScorer(self.ctc_head(h).log_softmax(-1), lens, BLANK_ID, SOS_EOS_ID) if w > 0 else None
        # candidates per hypothesis: without CTC, the k best tokens of a row are all a per-utterance top-k can take
        num_cand = min(V, max(k, int(PRE_BEAM_RATIO * k)) if scorer is not None else k)

        active = torch.arange(B, device=dev)  # utterances still searching; rows are active x beam, utterance-major
        utt = active.repeat_interleave(k)
        mem_kv, mem_pad = self._memory(h, lens, active)
        ys = torch.full((B * k, 1), SOS_EOS_ID, dtype=torch.long, device=dev)
        # one live row per utterance at the start: k copies of <sos> would fill the beam with duplicates
        live = (torch.arange(B * k, device=dev) % k) == 0
        att = torch.zeros(B * k, device=dev)
        ctc_state: CTCPrefixState | None = scorer.init_state(utt) if scorer is not None else None
        fin_best = torch.full((B, k), float("-inf"), device=dev)  # k best finished scores per active utterance
        finished: list[list[ARHypothesis]] = [[] for _ in range(B)]
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None

        for i in range(int(max_lens.max()) + 1):
            A = active.numel()
            logp, cache = self.decoder.step(ys, mem_kv, mem_pad, cache)
            logp = self._restrict(logp.float(), i >= max_lens[utt])
            cand_lp, cand = logp.topk(num_cand, dim=-1)  # (N, C)
            cand_att = att.unsqueeze(1) + cand_lp
            if ctc_state is not None:
                cand_ctc = scorer.score(ctc_state, cand).to(cand_att.dtype)
                total = (1.0 - w) * cand_att + w * cand_ctc
            else:
                cand_ctc = torch.zeros_like(cand_att)
                total = cand_att
            total = total + bonus * (i + 1)
            # NaN-safe: 0 * -inf at w = 1, garbage in dead rows
            total = total.masked_fill(~torch.isfinite(cand_lp) | ~live.unsqueeze(1), float("-inf"))

            sel_score, flat = total.view(A, k * num_cand).topk(k, dim=-1)  # (A, k)
            parent = torch.arange(A, device=dev).unsqueeze(1) * k + flat // num_cand  # rows of the current batch
            col = flat % num_cand
            sel_tok, sel_att, sel_ctc = cand[parent, col], cand_att[parent, col], cand_ctc[parent, col]
            ok = torch.isfinite(sel_score)
            is_eos = ok & (sel_tok == SOS_EOS_ID)
            sel_live = ok & ~is_eos

            if bool(is_eos.any()):
                a_idx, j_idx = is_eos.nonzero(as_tuple=True)
                rows = parent[a_idx, j_idx]
                for b, y, s, sa, sc in zip(
                    active[a_idx].tolist(), ys[rows, 1:].tolist(), sel_score[a_idx, j_idx].tolist(),
                    sel_att[a_idx, j_idx].tolist(), sel_ctc[a_idx, j_idx].tolist(),
                ):
                    finished[b].append(ARHypothesis(tuple(y), s, sa, sc if scorer is not None else 0.0))
                new_fin = sel_score.masked_fill(~is_eos, float("-inf"))
                fin_best = torch.cat([fin_best, new_fin], dim=1).topk(k, dim=1).values

            best_live = sel_score.masked_fill(~sel_live, float("-inf")).max(1).values
            slack = max(bonus, 0.0) * (max_lens[active] - i).to(best_live.dtype)  # what live rows may still gain
            done = ~sel_live.any(1) | (fin_best[:, -1] >= best_live + slack)
            if bool(done.all()):
                break

            keep = ~done
            rows = parent[keep].reshape(-1)
            tok = sel_tok[keep].reshape(-1)
            ys = torch.cat([ys[rows], tok.unsqueeze(1)], dim=1)
            cache = [(kk[rows], vv[rows]) for kk, vv in cache]
            att, live = sel_att[keep].reshape(-1), sel_live[keep].reshape(-1)
            if ctc_state is not None:
                ctc_state = scorer.extend(ctc_state, rows, tok)
            fin_best = fin_best[keep]
            if not bool(keep.all()):
                active = active[keep]
                utt = active.repeat_interleave(k)
                mem_kv, mem_pad = self._memory(h, lens, active)

        return [sorted(f, key=lambda hyp: -hyp.score)[:k] for f in finished]


def _check_options(opts: ASRDecodeOptions) -> None:
    if opts.beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {opts.beam_size}")
    if not 0.0 <= opts.ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {opts.ctc_weight}")
    if not opts.max_len_ratio > 0:
        raise ValueError(f"max_len_ratio must be > 0, got {opts.max_len_ratio}")


def decoder_io(tokens: torch.Tensor, token_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokens`` (B, L) padded with -1, ``token_lens`` (B,) -> decoder input ``<sos> + y`` (B, L + 1) (padding: a
    valid id) and target ``y + <eos>`` (B, L + 1) padded with -1; both have ``token_lens + 1`` valid positions."""
    B, L = tokens.shape
    sos = torch.full((B, 1), SOS_EOS_ID, dtype=tokens.dtype, device=tokens.device)
    ys_in = torch.cat([sos, tokens.clamp_min(0)], dim=1)
    pos = torch.arange(L + 1, device=tokens.device).unsqueeze(0)
    ys_out = torch.cat([tokens, torch.full_like(sos, -1)], dim=1)
    ys_out = torch.where(pos < token_lens.unsqueeze(1), ys_out, -1)  # ids past the length are padding
    ys_out = ys_out.masked_fill(pos == token_lens.unsqueeze(1), SOS_EOS_ID)
    return ys_in, ys_out
