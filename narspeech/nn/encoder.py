"""Transformer (Vaswani et al., 2017) and Conformer (Gulati et al., 2020, arXiv:2005.08100) speech encoders.

Both are ``(x, x_lens) -> (y, y_lens)``: Conv2d subsampling (x4, or x2), positional encoding, a stack of blocks, final norm.
Conformer blocks use LayerNorm in the convolution module instead of BatchNorm: statistics then do not depend on
the batch or on padding, so batched decoding gives exactly the per-utterance result.
``layer_hook(i, h, lens)`` runs after block ``i`` (1-based) and may return a new ``h``: the slot Intermediate CTC and
self-conditioned CTC plug into. It is also called with ``i = 0`` on the subsampled, position-encoded input before the
first block: where Imputer adds the embedding of its partially observed alignment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from narspeech.nn.mask import make_pad_mask
from narspeech.nn.pos_enc import PositionalEncoding
from narspeech.nn.subsampling import SUBSAMPLING

LayerHook = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]


@dataclass
class EncoderConfig:
    """Encoder sizes (saved in the checkpoint)."""

    block: str = "conformer"  # "conformer", "transformer" or "fft" (FastSpeech's convolutional feed-forward)
    d_model: int = 144
    num_heads: int = 4
    ffn_dim: int = 576
    num_layers: int = 6
    kernel_size: int = 15  # Conformer depthwise convolution; the fft block's feed-forward convolution
    dropout: float = 0.1
    # time subsampling of the Conv2d front-end: 4 (40 ms frames) or 2 (20 ms; for character CTC on fast speech,
    # where x4 leaves fewer than two frames per character, measured on the generated sentence corpora)
    subsampling_factor: int = 4
    # Conv2d channels of the subsampling; 64 instead of d_model makes the front end ~5x cheaper
    # (it is half of the encoder's CPU time at d_model channels) for no measurable accuracy loss on small models.
    subsampling_channels: int = 64
    # "abs": sinusoidal absolute positions; "none": the Conformer's convolutions alone carry relative position,
    # which keeps a model trained on a few fixed-length utterances from memorizing what is said where.
    pos_enc: str = "abs"


class FeedForward(nn.Sequential):
    def __init__(self, d: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(nn.LayerNorm(d), nn.Linear(d, ffn_dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d), nn.Dropout(dropout))


class SelfAttention(nn.Module):
    def __init__(self, d: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        h, _ = self.attn(h, h, h, key_padding_mask=pad_mask, need_weights=False)
        return self.dropout(h)


class ConvModule(nn.Module):
    """Pointwise + GLU, depthwise conv, norm, SiLU, pointwise; padded frames are zeroed before the depthwise conv.

    The pointwise convolutions are ``nn.Linear`` on (B, T, D): the same operation as a kernel-1 Conv1d, without the
    two transposes around it (a tenth of the encoder's CPU time at batch 1).
    """

    def __init__(self, d: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, kernel_size, padding=kernel_size // 2, groups=d)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        h = nn.functional.glu(self.pw1(self.norm(x)), dim=-1)  # (B, T, D)
        if pad_mask is not None:  # padded frames must not reach valid ones through the depthwise conv
            h = h.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        h = self.dw(h.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.pw2(nn.functional.silu(self.dw_norm(h))))


class ConformerBlock(nn.Module):
    """Macaron FFN/2 -> MHSA -> Conv -> FFN/2 -> LayerNorm."""

    def __init__(self, d: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(d, ffn_dim, dropout)
        self.mhsa = SelfAttention(d, num_heads, dropout)
        self.conv = ConvModule(d, kernel_size, dropout)
        self.ff2 = FeedForward(d, ffn_dim, dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.mhsa(x, pad_mask)
        x = x + self.conv(x, pad_mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + feed-forward."""

    def __init__(self, d: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        del kernel_size  # same signature as ConformerBlock
        self.mhsa = SelfAttention(d, num_heads, dropout)
        self.ff = FeedForward(d, ffn_dim, dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.mhsa(x, pad_mask)
        return x + self.ff(x)


class ConvFeedForward(nn.Module):
    """FastSpeech's position-wise feed-forward: Conv1d(kernel_size) -> ReLU -> Conv1d(1), padded frames zeroed
    first so that they do not leak into their neighbours through the kernel."""

    def __init__(self, d: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv1 = nn.Conv1d(d, ffn_dim, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(ffn_dim, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        if pad_mask is not None:
            h = h.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        h = self.conv2(self.dropout(torch.relu(self.conv1(h.transpose(1, 2))))).transpose(1, 2)
        return self.dropout(h)


class FFTBlock(nn.Module):
    """FastSpeech's feed-forward Transformer block (Ren et al., 2019), pre-norm: self-attention + convolutional
    feed-forward (``kernel_size`` 9 in the papers)."""

    def __init__(self, d: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.mhsa = SelfAttention(d, num_heads, dropout)
        self.ff = ConvFeedForward(d, ffn_dim, kernel_size, dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.mhsa(x, pad_mask)
        return x + self.ff(x, pad_mask)


BLOCKS = {"conformer": ConformerBlock, "transformer": TransformerBlock, "fft": FFTBlock}


class Encoder(nn.Module):
    """Subsampling + positional encoding + ``num_layers`` blocks + LayerNorm."""

    def __init__(
        self,
        input_dim: int,
        block: str = "conformer",
        d_model: int = 144,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 6,
        kernel_size: int = 15,
        dropout: float = 0.1,
        subsampling_channels: int = 64,
        pos_enc: str = "abs",
        subsampling_factor: int = 4,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown encoder block {block!r}; valid: {sorted(BLOCKS)}")
        if pos_enc not in ("abs", "none"):
            raise ValueError(f"unknown positional encoding {pos_enc!r}; valid: abs, none")
        self.d_model = d_model
        if subsampling_factor not in SUBSAMPLING:
            raise ValueError(f"unknown subsampling_factor {subsampling_factor}; valid: {sorted(SUBSAMPLING)}")
        self.subsampling = SUBSAMPLING[subsampling_factor](input_dim, d_model, subsampling_channels)
        self.pos_enc = PositionalEncoding(d_model, dropout) if pos_enc == "abs" else nn.Dropout(dropout)
        self.layers = nn.ModuleList(BLOCKS[block](d_model, num_heads, ffn_dim, kernel_size, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    @classmethod
    def from_config(cls, input_dim: int, cfg: EncoderConfig) -> "Encoder":
        return cls(input_dim, cfg.block, cfg.d_model, cfg.num_heads, cfg.ffn_dim, cfg.num_layers, cfg.kernel_size, cfg.dropout,
                   cfg.subsampling_channels, cfg.pos_enc, cfg.subsampling_factor)

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, layer_hook: LayerHook | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, T, input_dim) features, ``x_lens``: (B,) valid frames
        -> ``y``: (B, T', d_model), ``y_lens``: (B,) valid frames after subsampling."""
        h, lens = self.subsampling(x, x_lens)
        h = self.pos_enc(h)
        pad_mask: torch.Tensor | None = make_pad_mask(lens, h.size(1))
        if not pad_mask.any():
            pad_mask = None  # no padding (e.g. batch 1): the unmasked attention and conv paths are faster
        if layer_hook is not None:
            new_h = layer_hook(0, h, lens)
            h = h if new_h is None else new_h
        for i, layer in enumerate(self.layers, 1):
            h = layer(h, pad_mask)
            if layer_hook is not None:
                new_h = layer_hook(i, h, lens)
                h = h if new_h is None else new_h
        return self.norm(h), lens
