"""Convolutional front-ends that subsample time by 4 (two stride-2 Conv2d) or by 2 (one stride-2, one stride-1
Conv2d), as ESPnet's Conv2dSubsampling and Conv2dSubsampling2 (both need 7 input frames for one output frame), and
a linear one that keeps every position (factor 1, for text encoders)."""

from __future__ import annotations

import torch
from torch import nn


class Conv2dSubsampling4(nn.Module):
    """(B, T, idim) features -> (B, T', odim), T' = ((T - 1) // 2 - 1) // 2."""

    strides = (2, 2)

    def __init__(self, idim: int, odim: int, channels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        channels = channels or odim
        (s1, s2) = self.strides
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, s1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, s2),
            nn.ReLU(),
        )
        self.out = nn.Linear(channels * int(self.output_lengths(torch.tensor(idim))), odim)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def output_lengths(cls, x_lens: torch.Tensor) -> torch.Tensor:
        """Output frames (or frequency bins) of each length: a kernel-3 convolution per stride, no padding."""
        for s in cls.strides:
            x_lens = torch.div(x_lens - 3, s, rounding_mode="floor") + 1
        return x_lens

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, T, idim), ``x_lens``: (B,) valid frames -> (B, T', odim), (B,) valid subsampled frames."""
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = y.shape
        y = self.out(y.transpose(1, 2).reshape(b, t, c * f))
        return self.dropout(y), self.output_lengths(x_lens).clamp_min(0)


class Conv2dSubsampling2(Conv2dSubsampling4):
    """(B, T, idim) features -> (B, T', odim), T' = (T - 1) // 2 - 2: twice the frame rate of the x4 front-end,
    for character CTC on fast speech, where x4 leaves fewer than two frames per character (CTC needs one frame per
    token and drops those it has no room for)."""

    strides = (2, 1)


class LinearFrontEnd(nn.Module):
    """No subsampling: a linear projection of each input vector (token embeddings of text encoders)."""

    def __init__(self, idim: int, odim: int, channels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        del channels  # same signature as the Conv2d front-ends
        self.out = nn.Linear(idim, odim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, T, idim), ``x_lens``: (B,) -> (B, T, odim), the same lengths."""
        return self.dropout(self.out(x)), x_lens


SUBSAMPLING = {4: Conv2dSubsampling4, 2: Conv2dSubsampling2, 1: LinearFrontEnd}
