"""Improved Mask-CTC's length prediction (Higuchi et al., 2021), split from :mod:`narspeech.asr.mask_ctc`: the
span-length head's inputs and logits, the reference spans it is trained on, and the decoding step that expands or
shrinks masked spans. :class:`LengthPredictionMixin` is mixed into :class:`~narspeech.asr.mask_ctc.MaskCTCModel`,
whose ``__init__`` builds the modules these methods use."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from narspeech.nat.ctc import (
    ctc_forced_align_batch,
    ctc_path_tokens,
    frame_cumsum,
    span_means,
    span_sums,
    token_spans,
)
from narspeech.nat.length import (
    cap_mask_counts,
    expand_masks,
    expand_runs,
    hypothesis_length_targets,
    merge_mask_runs,
    merge_spans,
    neighbour_spans,
)
from narspeech.nat.refine import lowest_scores_mask
from narspeech.nn.mask import make_pad_mask
from narspeech.text.tokenizer import BLANK_ID

if TYPE_CHECKING:
    from narspeech.asr.mask_ctc import MaskCTCState

class FrameSums(NamedTuple):
    """Running sums over encoder frames from 0 (one subtraction gives any interval's sum)."""

    states: torch.Tensor  # (B, T + 1, d) of the encoder output
    speech: torch.Tensor  # (B, T + 1) of the CTC non-blank probability
    rate: torch.Tensor  # (B,) tokens per unit of speech mass in the utterance
    ctc_starts: torch.Tensor  # (B, T + 1) of the frames where the CTC best path starts a token

    def with_tokens(self, tokens: torch.Tensor) -> "FrameSums":
        """The same sums with the rate of ``tokens`` (B,) tokens per utterance."""
        return self._replace(rate=tokens.to(self.speech.dtype) / self.speech[:, -1].clamp_min(1e-3))




class LengthPredictionMixin:
    """The length-prediction methods of MaskCTCModel (see the module docstring)."""

    def _hypothesis_length_inputs(
        self,
        hyp: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        refs: list[list[int]],
        lens: torch.Tensor,
        cum: "FrameSums | None",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, "FrameSums | None"]:
        """The length-loss copy from the CTC hypothesis, built as decoding builds its first length step.

        ``hyp`` what :func:`ctc_tokens_with_frames` gives for the batch's detached CTC posteriors, ``refs`` the B
        references, ``lens`` (B,) valid frames, ``cum`` the frame sums of the batch (None without acoustic
        embeddings) -> decoder input (B, L'), lens (B,), targets (B, L'), frame intervals (B, L', 2) (a merged
        mask's: the gap between its unmasked neighbours) and frame sums whose token rate is CTC's count (as in
        decoding), the last two None without acoustic embeddings."""
        hyp, conf, hyp_lens, frame_token = hyp
        masked = lowest_scores_mask(conf, hyp_lens)
        inp, new_lens, tgt, dest = hypothesis_length_targets(hyp, hyp_lens, masked, refs, self.max_span_length)
        if cum is None:
            return inp, new_lens, tgt, None, None
        spans = neighbour_spans(token_spans(frame_token, hyp.size(1)), hyp_lens, masked, lens)
        return inp, new_lens, tgt, merge_spans(spans, dest, inp.size(1)), cum.with_tokens(hyp_lens)

    def reference_spans(
        self, log_probs: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor
    ) -> torch.Tensor:
        """The frames of each reference token, by CTC forced alignment under ``log_probs``.

        ``log_probs`` (B, T, V) CTC log-posteriors (no gradient needed), ``lens`` (B,) valid frames, ``tokens``
        (B, L) references padded with -1, ``token_lens`` (B,) -> (B, L, 2) [start, end) frame interval of each
        token's run in the alignment ([0, 0) at padding). A reference with more tokens (+ repeats) than frames has
        no CTC alignment: its frames are split evenly among its tokens instead (token l: [l T // L, (l + 1) T // L)).
        """
        path, aligned = ctc_forced_align_batch(log_probs, lens, tokens, token_lens, BLANK_ID)
        frame_token, _ = ctc_path_tokens(path, lens, BLANK_ID)
        aligned_spans = token_spans(frame_token, tokens.size(1))
        l = torch.arange(tokens.size(1) + 1, device=log_probs.device).unsqueeze(0)
        edges = torch.div(l * lens.unsqueeze(1), token_lens.clamp_min(1).unsqueeze(1), rounding_mode="floor")
        even = torch.stack([edges[:, :-1], edges[:, 1:]], -1)
        even = even.masked_fill(make_pad_mask(token_lens, tokens.size(1)).unsqueeze(-1), 0)
        return torch.where(aligned.view(-1, 1, 1), aligned_spans, even)

    def _acoustic_inputs(self, cum: "FrameSums | None", spans: torch.Tensor | None) -> torch.Tensor | None:
        """Decoder input vectors (B, L, d) from the frame intervals ``spans`` (B, L, 2) of the encoder output whose
        running sums are ``cum``: the projection of [mean state over the interval, log(1 + frames)]
        (zeros in, bias out for positions without frames); None without the option."""
        if spans is None:
            return None
        mean, counts = span_means(cum.states, spans)
        feats = torch.cat([mean, torch.log1p(counts.to(mean.dtype)).unsqueeze(-1)], -1)
        return self.acoustic_proj(feats.to(self.acoustic_proj.weight.dtype))

    def _frame_sums(
        self, h: torch.Tensor, log_probs: torch.Tensor, lens: torch.Tensor, token_lens: torch.Tensor | None = None
    ) -> "FrameSums":
        """Running sums over the frames of ``h`` (B, T, d), of the CTC non-blank probability (from ``log_probs``
        (B, T, V), padding excluded: ``lens`` (B,)) and of the token starts of the CTC best path, and each
        utterance's tokens per unit of that speech mass (``token_lens`` (B,): the reference's in training; None:
        CTC's own count, in decoding)."""
        speech = (1.0 - log_probs[..., BLANK_ID].float().exp()).masked_fill(make_pad_mask(lens, h.size(1)), 0.0)
        speech_cum = nn.functional.pad(speech.cumsum(1), (1, 0))
        # tokens the CTC best path has started by each frame: the running max of its token index (-1 at blanks) + 1
        frame_token, ctc_count = ctc_path_tokens(log_probs.argmax(-1), lens, BLANK_ID)
        starts_cum = nn.functional.pad((frame_token.cummax(1).values + 1).to(speech.dtype), (1, 0))
        sums = FrameSums(frame_cumsum(h), speech_cum, speech_cum[:, -1], starts_cum)  # the rate is set next
        return sums.with_tokens(ctc_count if token_lens is None else token_lens)

    def _length_logits(self, states: torch.Tensor, spans: torch.Tensor | None, sums: "FrameSums | None") -> torch.Tensor:
        """Span-length logits (B, L, max_span_length + 1) from decoder states (B, L, d); with acoustic embeddings
        plus a duration prior from the frame intervals ``spans`` (B, L, 2).

        The prior: a span holds about its share of the utterance's tokens, ``lambda = tokens * (speech mass of the
        span / speech mass of the utterance)``, the speech mass being the sum of the CTC non-blank probability
        over frames (pauses count for nothing). Measured with the ljsynth CTC model on the deletion- and
        insertion-simulated masks of 150 dev references: round(lambda) is exact for 91 % of them (66 % of those
        that stand for >= 1 token), within one for 99 % (97 %). Its log-density -beta (k - lambda)^2 / 2 (beta
        learned, from 4) is added to the head's logits (zero at the start), which learn the corrections (context,
        spelling). Without it the head must find the length in the decoder state: on the tone corpus of the
        tests, with the log frame count as an extra input, 3 of 137 corrupted spans were still wrong after 200
        epochs (92 of 118 at epoch 20), the logit gaps it needs being large for Adam's small steps; with it, 0-3
        from epoch 60 (12 at epoch 20). Per utterance rather than one corpus rate: it follows the speaking rate,
        and its total is right even while early CTC posteriors are not.

        ``length_prior: ctc`` instead: lambda = the number of tokens the model's CTC best path starts within the
        span's frames. In decoding a merged run's gap holds exactly the CTC tokens it merged, so the prior is CTC's
        count and the head learns where CTC miscounts. On the simulated masks above (4 draws per dev reference, the
        models' own CTC heads) it is exact for 77 % of the masks that stand for >= 1 token on ljsynth (speech:
        68 %) and 85 % on the mini task (72 %). On the tone corpus of the tests it learns more slowly (12 of 137
        corruptions not restored after 70 epochs, against the speech prior's few)."""
        logits = self.length_head(states)
        if spans is None:
            return logits
        if self.length_prior == "ctc":
            expected = span_sums(sums.ctc_starts.unsqueeze(-1), spans)[0]  # (B, L, 1)
        else:
            mass = span_sums(sums.speech.unsqueeze(-1), spans)[0].squeeze(-1).clamp_min(0.0)
            expected = (mass * sums.rate.unsqueeze(1)).unsqueeze(-1)  # (B, L, 1)
        k = torch.arange(logits.size(-1), device=logits.device, dtype=expected.dtype)
        beta = self.length_prior_log_beta.exp()
        return logits + (-0.5 * beta * (k - expected) ** 2).to(logits.dtype)

    def _length_step(
        self,
        state: MaskCTCState,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        cum: "FrameSums | None",
        length_threshold: float = 0.0,
        length_steps: int = 0,
        deletion_threshold: float = 0.0,
    ) -> MaskCTCState:
        """One Improved Mask-CTC iteration: merge each run of masks into one, predict how many tokens it stands
        for (a run longer than ``max_span_length``, or whose prediction has a probability below
        ``length_threshold``, keeps its length), expand it to that many masks, then one mask-predict pass (skipped
        when every mask was deleted). A merged mask's frames are the gap between its unmasked neighbours; after the
        prediction the masks keep their own frames, the masks a run gains go where its frames are (gaps and masks, in
        proportion to their frames), those it loses are the ones with the fewest frames
        (:func:`narspeech.nat.length.expand_runs`).
        From iteration ``length_steps`` on (when > 0) only the mask-predict pass runs."""
        if 0 < length_steps <= state.passes:
            return self._fill_step(state, memory, memory_lens, cum, deletion_threshold)
        spans = None if state.spans is None else neighbour_spans(state.spans, state.lens, state.masked, memory_lens)
        tokens, lens, masked, run_len, dest = merge_mask_runs(state.tokens, state.lens, state.masked)
        spans = None if spans is None else merge_spans(spans, dest, tokens.size(1))
        states = self.decoder.states(tokens, lens.clamp_min(1), memory, memory_lens, self._acoustic_inputs(cum, spans))
        prob, counts = self._length_logits(states, spans, cum).softmax(-1).max(-1)
        # below length_threshold the head is not trusted: the run keeps its number of masks (CTC's count at first)
        counts = torch.where(prob >= length_threshold, counts, run_len)
        # a run of more masks than the head has classes for (training leaves such spans out) keeps its length:
        # predicting it would truncate it to max_span_length
        counts = torch.where(run_len > self.max_span_length, run_len, counts)
        # CTC cannot emit more tokens than there are frames: a bound on what a poorly trained predictor inserts
        if spans is None:
            tokens, lens, masked, _ = expand_masks(tokens, lens, masked, counts, max_lens=memory_lens)
        else:  # masks added or deleted where the frames say, the others keep theirs
            counts = cap_mask_counts(lens, masked, counts, memory_lens)
            tokens, lens, masked, spans = expand_runs(
                state.tokens, state.lens, state.masked, state.spans, dest, counts, memory_lens
            )
        state = state._replace(tokens=tokens, lens=lens, masked=masked, spans=spans)
        if not bool(masked.any()):
            return state._replace(remaining=state.remaining - 1)
        return self._fill_step(state, memory, memory_lens, cum, deletion_threshold)
