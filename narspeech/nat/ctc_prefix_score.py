"""Batched CTC prefix scoring for joint CTC/attention decoding (Watanabe et al., 2017, "Hybrid CTC/attention
architecture for end-to-end speech recognition", IEEE JSTSP, Algorithm 2; Kim, Hori & Watanabe, 2017,
arXiv:1609.06773), in the spirit of ESPnet's ``CTCPrefixScoreTH``: many hypotheses of many utterances, each
extended by a set of candidate tokens, scored at once.

Definitions (what the tests check by brute force). ``x_t(k)`` is the CTC log-posterior of class ``k`` at frame ``t``
of an utterance with ``T`` valid frames. For a prefix ``g`` (a token sequence without blanks):

- ``r^n_t(g)`` / ``r^b_t(g)``: log-probability that frames ``0..t`` collapse to exactly ``g`` and frame ``t`` is a
  non-blank / a blank (the forward variables; the state kept per hypothesis, over all frames).
- the prefix score ``psi(g) = log sum_{paths pi in V^T, collapse(pi) starts with g} P(pi)``, i.e. the total
  probability of all label sequences that begin with ``g``;
- the end-of-sentence score ``psi(g + <eos>) = log P(collapse(pi) == g) = logaddexp(r^n_{T-1}(g), r^b_{T-1}(g))``,
  which is ``-ctc_loss(g)``.

Recursions, for ``h = g + c`` with ``phi_{t-1}(g, c) = r^b_{t-1}(g)`` when ``c`` repeats the last token of ``g`` (a
blank must separate them) and ``logaddexp(r^n_{t-1}(g), r^b_{t-1}(g))`` otherwise, and a virtual frame ``-1`` where
the empty prefix has probability 1:

    r^n_t(h) = logaddexp(r^n_{t-1}(h), phi_{t-1}(g, c)) + x_t(c)
    r^b_t(h) = logaddexp(r^n_{t-1}(h), r^b_{t-1}(h)) + x_t(blank)
    psi(h)   = logsumexp_{t=0..T-1} (phi_{t-1}(g, c) + x_t(c))      (c's first frame is t)

Two things differ from ESPnet's implementation (same numbers, less work):

1. ``psi`` of a candidate needs only the parent's forward variables: it is a single ``logsumexp`` over frames of a
   (hyps, candidates, frames) tensor, with no recursion. The recursion runs only for the hypotheses that the beam
   search keeps (``extend``), not for every scored candidate.
2. Both recursions are first-order linear in the probability domain, ``a_t = X_t (a_{t-1} + Phi_{t-1})``, so they have
   the closed form ``log a_t = A_t + logcumsumexp_{s<=t}(log Phi_{s-1} - A_{s-1})`` with ``A_t = sum_{u<=t} log X_u``:
   two ``cumsum`` + two ``logcumsumexp`` over the frame axis replace the Python loop over frames. The subtraction of
   cumulative sums loses about ``eps * |A_T|`` in absolute log-probability, so the scorer works in float64
   (``|A_T|`` of 10^5 still leaves ~1e-11).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from narspeech.nn.mask import make_pad_mask

# log-posteriors are clamped here so that cumulative sums stay finite (exp(-1e4) is 0 in any float format, so this
# changes no representable probability) and ``A_t - A_s`` never meets ``-inf - -inf``.
LOG_PROB_FLOOR = -1e4
NO_TOKEN = -1  # "last token" of the empty prefix: equal to no candidate


class CTCPrefixState(NamedTuple):
    """Forward variables of N hypotheses (rows). Column 0 is the virtual frame -1, column ``t + 1`` is frame ``t``."""

    r_n: torch.Tensor  # (N, T + 1) float64, log r^n over frames (padded frames: garbage, never read)
    r_b: torch.Tensor  # (N, T + 1) float64, log r^b over frames
    last: torch.Tensor  # (N,) last token of the prefix (NO_TOKEN for the empty prefix)
    utt: torch.Tensor  # (N,) utterance (row of the scorer's log_probs) each hypothesis belongs to


class CTCPrefixScorer:
    """CTC prefix scores of a batch of utterances.

    ``log_probs`` (B, T, V) CTC log-posteriors, ``lens`` (B,) valid frames per utterance. Hypotheses are rows of a
    :class:`CTCPrefixState`; each row names its utterance, so beams of different utterances live in one batch.
    """

    def __init__(self, log_probs: torch.Tensor, lens: torch.Tensor, blank: int, eos: int) -> None:
        if log_probs.dim() != 3 or lens.shape != log_probs.shape[:1]:
            raise ValueError(f"log_probs must be (B, T, V) and lens (B,), got {tuple(log_probs.shape)}, {tuple(lens.shape)}")
        if int(lens.min()) < 1:
            raise ValueError("every utterance needs at least one frame")
        self.blank, self.eos = blank, eos
        self.lens = lens.to(log_probs.device)
        pad = make_pad_mask(self.lens, log_probs.size(1))  # (B, T)
        x = log_probs.float().clamp_min(LOG_PROB_FLOOR).masked_fill(pad.unsqueeze(-1), 0.0)
        # (B, V, T) float32: candidates gather whole frame rows, converted to float64 only once gathered (a
        # float64 copy of the whole batch would double the largest tensor of the search for nothing)
        self.x = x.transpose(1, 2).contiguous()
        self.pad = pad
        self.blank_cum = x[:, :, blank].double().cumsum(1)  # (B, T): D_t = sum_{u<=t} x_u(blank)

    def init_state(self, utt: torch.Tensor) -> CTCPrefixState:
        """Empty prefixes (after <sos>) for rows belonging to utterances ``utt`` (N,)."""
        n, T = utt.numel(), self.x.size(-1)
        r_n = self.blank_cum.new_full((n, T + 1), float("-inf"))
        r_b = torch.cat([self.blank_cum.new_zeros(n, 1), self.blank_cum[utt]], dim=1)  # all-blank paths; P = 1 at frame -1
        last = torch.full((n,), NO_TOKEN, dtype=torch.long, device=utt.device)
        return CTCPrefixState(r_n, r_b, last, utt)

    def _phi(self, state: CTCPrefixState) -> tuple[torch.Tensor, torch.Tensor]:
        """phi over frames -1..T-2 for a new token that differs from / repeats the last one: each (N, T)."""
        return torch.logaddexp(state.r_n, state.r_b)[:, :-1], state.r_b[:, :-1]

    def score(self, state: CTCPrefixState, cand: torch.Tensor) -> torch.Tensor:
        """Prefix scores ``psi(g + c)`` (N, K) float64 of the N hypotheses ``g`` extended by candidates ``cand``
        (N, K) token ids; ``<eos>`` gets ``log P(g)``, blank gets ``-inf``."""
        phi_new, phi_rep = self._phi(state)
        xc = self.x[state.utt.unsqueeze(1), cand].double()  # (N, K, T)
        rep = (cand == state.last.unsqueeze(1)).unsqueeze(-1)
        terms = torch.where(rep, phi_rep.unsqueeze(1), phi_new.unsqueeze(1)) + xc
        terms = terms.masked_fill(self.pad[state.utt].unsqueeze(1), float("-inf"))
        psi = terms.logsumexp(-1)
        total = torch.logaddexp(state.r_n, state.r_b)  # (N, T + 1)
        end = total.gather(1, self.lens[state.utt].unsqueeze(1))  # column T_b = frame T_b - 1
        psi = torch.where(cand == self.eos, end, psi)
        return psi.masked_fill(cand == self.blank, float("-inf"))

    def extend(self, state: CTCPrefixState, rows: torch.Tensor, tokens: torch.Tensor) -> CTCPrefixState:
        """The state of the prefixes ``g_rows + tokens``: ``rows`` (M,) indices into ``state``, ``tokens`` (M,) ids
        (neither blank nor <eos>, whose forward variables are not those of a prefix; rows carrying them come back
        as garbage, which the caller must not use)."""
        r_n, r_b, last, utt = state.r_n[rows], state.r_b[rows], state.last[rows], state.utt[rows]
        par = CTCPrefixState(r_n, r_b, last, utt)
        phi_new, phi_rep = self._phi(par)
        phi = torch.where((tokens == last).unsqueeze(1), phi_rep, phi_new)  # (M, T): frames -1..T-2
        xc = self.x[utt, tokens].double()  # (M, T)
        neg_inf = r_n.new_full((rows.numel(), 1), float("-inf"))
        new_n = _linear_recursion(phi, xc.cumsum(1))
        new_n = torch.cat([neg_inf, new_n], dim=1)  # nothing is emitted at the virtual frame -1
        new_b = _linear_recursion(new_n[:, :-1], self.blank_cum[utt])
        return CTCPrefixState(new_n, torch.cat([neg_inf, new_b], dim=1), tokens, utt)


def _linear_recursion(log_inp: torch.Tensor, cum: torch.Tensor) -> torch.Tensor:
    """Solve ``a_t = X_t (a_{t-1} + In_{t-1})``, ``a_{-1} = 0``, in the log domain without a loop over frames.

    ``log_inp`` (M, T) is ``log In`` at frames -1..T-2, ``cum`` (M, T) is ``A_t = sum_{u<=t} log X_u`` -> ``log a``
    (M, T) at frames 0..T-1: ``log a_t = A_t + logcumsumexp_{s<=t}(log In_{s-1} - A_{s-1})``.
    """
    prev = torch.cat([cum.new_zeros(cum.size(0), 1), cum[:, :-1]], dim=1)  # A_{s-1}, A_{-1} = 0
    return cum + torch.logcumsumexp(log_inp - prev, dim=1)
