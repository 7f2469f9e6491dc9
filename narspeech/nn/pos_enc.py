"""Sinusoidal positional encoding (Vaswani et al., 2017), scaled input as in ESPnet's PositionalEncoding."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """x * sqrt(d) + PE; the table grows on demand so any length works."""

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 2000) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", self._table(max_len), persistent=False)

    def _table(self, n: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / self.d_model))
        pe = torch.zeros(n, self.d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, T, D) -> (B, T, D)."""
        if x.size(1) > self.pe.size(0):
            self.pe = self._table(x.size(1)).to(self.pe.device)
        return self.dropout(x * self.xscale + self.pe[: x.size(1)].to(x.dtype))
