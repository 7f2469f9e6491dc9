"""The built-in aligner: unsupervised text-to-mel alignment learned jointly with the TTS model (Badlani et al., ICASSP
2022, "One TTS Alignment To Rule Them All"), so that no external forced aligner (MFA) is needed.

Text embeddings and mel frames are each encoded by a small convolution stack; the soft alignment of frame ``t`` to
token ``n`` is a softmax over tokens of the negative scaled L2 distance, times a beta-binomial prior that favours the
diagonal early in training. Training maximises the likelihood of all monotonic alignments (the *forward-sum* loss, a
CTC loss whose "labels" are the token positions); the hard alignment is the most probable monotonic path (monotonic
alignment search, Glow-TTS), whose per-token frame counts are the durations: every token gets at least one frame and
they sum exactly to the mel frames. A binarisation loss then pulls the soft alignment towards the hard one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from narspeech.nn.mask import make_pad_mask

TEMPERATURE = 0.0005  # scales the squared distance into logits (the paper's value for 80-bin mels)
BLANK_LOGPROB = -1.0  # log-score of the forward-sum loss's blank (RAD-TTS / FastPitch): a constant, never learned
NEG_INF = -1e9  # finite "minus infinity": keeps masked softmaxes and MAS free of NaN


class AlignmentEncoder(nn.Module):
    """Log soft alignment of mel frames to text tokens."""

    def __init__(self, n_mels: int, text_dim: int, channels: int = 80, temperature: float = TEMPERATURE) -> None:
        super().__init__()
        self.temperature = temperature
        self.key = nn.Sequential(nn.Conv1d(text_dim, 2 * text_dim, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(2 * text_dim, channels, 1))
        self.query = nn.Sequential(nn.Conv1d(n_mels, 2 * n_mels, 3, padding=1), nn.ReLU(),
                                   nn.Conv1d(2 * n_mels, n_mels, 1), nn.ReLU(), nn.Conv1d(n_mels, channels, 1))

    def forward(self, mel: torch.Tensor, mel_lens: torch.Tensor, text: torch.Tensor, text_lens: torch.Tensor,
                log_prior: torch.Tensor | None = None) -> torch.Tensor:
        """``mel`` (B, T, n_mels), ``text`` (B, N, text_dim) with valid lengths (B,) -> log alignment scores
        (B, T, N): per frame a log-distribution over the item's tokens (plus ``log_prior`` (B, T, N) if given,
        not renormalised, as in the paper); padded tokens get :data:`NEG_INF`."""
        q = self.query(mel.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        k = self.key(text.transpose(1, 2)).transpose(1, 2)  # (B, N, C)
        # squared L2 distance as |q|^2 + |k|^2 - 2 q.k: a matmul, without a (B, T, N, C) difference tensor
        dist = (q.pow(2).sum(-1, keepdim=True) + k.pow(2).sum(-1).unsqueeze(1) - 2 * q @ k.transpose(1, 2)).clamp_min(0)
        pad = make_pad_mask(text_lens, text.size(1)).unsqueeze(1)
        logp = (-self.temperature * dist).masked_fill(pad, NEG_INF).log_softmax(-1)
        if log_prior is not None:
            logp = logp + log_prior
        return logp.masked_fill(pad, NEG_INF)


def beta_binomial_log_prior(text_lens: torch.Tensor, mel_lens: torch.Tensor, scaling: float = 1.0) -> torch.Tensor:
    """Log of the beta-binomial alignment prior (B, T, N): frame ``t`` (1-based) of ``T`` draws token ``k`` of
    ``N`` from BetaBinomial(n = N - 1, a = scaling * t, b = scaling * (T - t + 1)); 0 at padding.

    Computed in closed form with ``lgamma`` for the whole batch at once (scipy's ``betabinom`` would need a loop over
    items of different lengths)."""
    B, T, N = text_lens.numel(), int(mel_lens.max()), int(text_lens.max())
    dev = text_lens.device
    n = (text_lens - 1).double().view(B, 1, 1)
    k = torch.arange(N, device=dev, dtype=torch.float64).view(1, 1, N)
    t = torch.arange(1, T + 1, device=dev, dtype=torch.float64).view(1, T, 1)
    a = scaling * t
    b = scaling * (mel_lens.double().view(B, 1, 1) - t + 1).clamp_min(1e-3)
    kk = torch.minimum(k, n)  # keeps lgamma's arguments positive at padded tokens (masked below)

    def lbeta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    logp = (torch.lgamma(n + 1) - torch.lgamma(kk + 1) - torch.lgamma(n - kk + 1)
            + lbeta(kk + a, n - kk + b) - lbeta(a, b))
    valid = (k < text_lens.view(B, 1, 1)) & (t <= mel_lens.view(B, 1, 1))
    return torch.where(valid, logp, torch.zeros_like(logp)).float()


def forward_sum_loss(log_align: torch.Tensor, text_lens: torch.Tensor, mel_lens: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of every monotonic alignment that visits each token (a CTC loss over token positions
    with a constant-score blank), averaged over items and normalised by their token counts."""
    B, T, N = log_align.shape
    blank = log_align.new_full((B, T, 1), BLANK_LOGPROB)
    logp = torch.cat([blank, log_align], -1).log_softmax(-1)  # (B, T, N + 1); class 0 = blank
    targets = torch.arange(1, N + 1, device=log_align.device).expand(B, N)
    return F.ctc_loss(logp.transpose(0, 1).float(), targets, mel_lens, text_lens, blank=0, reduction="mean",
                      zero_infinity=True)


@torch.no_grad()
def monotonic_alignment(log_align: torch.Tensor, text_lens: torch.Tensor, mel_lens: torch.Tensor) -> torch.Tensor:
    """Monotonic alignment search (Kim et al., 2020): the path from (frame 0, token 0) to the last frame and token
    that maximises the summed scores, each frame staying on its token or moving to the next.

    ``log_align`` (B, T, N) -> durations (B, N) int64: >= 1 for every valid token, summing to ``mel_lens``
    (requires ``mel_lens >= text_lens``), 0 at padded tokens. The dynamic programme loops over frames only, each
    step a tensor op over the batch and the tokens."""
    if (mel_lens < text_lens).any():
        raise ValueError("monotonic alignment needs at least one frame per token")
    B, T, N = log_align.shape
    s = log_align.detach().float().cpu()
    tl, ml = text_lens.cpu(), mel_lens.cpu()
    q = torch.full((B, T, N), NEG_INF)
    q[:, 0, 0] = s[:, 0, 0]
    for t in range(1, T):
        prev = q[:, t - 1]
        shifted = F.pad(prev[:, :-1], (1, 0), value=NEG_INF)
        q[:, t] = s[:, t] + torch.maximum(prev, shifted)
    durations = torch.zeros(B, N, dtype=torch.long)
    cur = tl - 1
    rows = torch.arange(B)
    for t in range(T - 1, -1, -1):
        active = t < ml
        durations[rows[active], cur[active]] += 1
        if t == 0:
            break
        stay = q[rows, t - 1, cur]
        move = q[rows, t - 1, (cur - 1).clamp_min(0)]
        # move to the previous token when it scores higher, or when staying would leave too few frames before t
        go = active & (cur > 0) & ((move > stay) | (cur >= t))
        cur = cur - go.long()
    return durations.to(log_align.device)


def durations_to_path(durations: torch.Tensor, max_frames: int) -> torch.Tensor:
    """Durations (B, N) -> hard alignment (B, T, N) with one 1 per valid frame."""
    ends = durations.cumsum(1)
    t = torch.arange(max_frames, device=durations.device).view(1, -1, 1)
    return ((t < ends.unsqueeze(1)) & (t >= (ends - durations).unsqueeze(1))).float()


def binarization_loss(log_align: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Mean negative log soft-alignment probability on the hard path (pulls the soft alignment to the hard one).
    ``log_align`` and ``hard`` (B, T, N)."""
    logp = log_align.log_softmax(-1)  # the soft alignment itself (renormalised after the prior)
    return -(logp.clamp_min(NEG_INF) * hard).sum() / hard.sum().clamp_min(1.0)
