"""Convolutional front-end that subsamples time by 4 (two stride-2 Conv2d), as in ESPnet's Conv2dSubsampling."""

from __future__ import annotations

import torch
from torch import nn


class Conv2dSubsampling4(nn.Module):
    """(B, T, idim) features -> (B, T', odim), T' = ((T - 1) // 2 - 1) // 2."""

    def __init__(self, idim: int, odim: int, channels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        channels = channels or odim
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 2),
            nn.ReLU(),
        )
        freq = ((idim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, odim)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def output_lengths(x_lens: torch.Tensor) -> torch.Tensor:
        return torch.div(torch.div(x_lens - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, T, idim), ``x_lens``: (B,) valid frames -> (B, T', odim), (B,) valid subsampled frames."""
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = y.shape
        y = self.out(y.transpose(1, 2).reshape(b, t, c * f))
        return self.dropout(y), self.output_lengths(x_lens).clamp_min(0)
