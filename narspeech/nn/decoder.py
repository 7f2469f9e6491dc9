"""Transformer decoder over tokens with cross-attention to an encoder (Vaswani et al., 2017), shared by the
NAR Mask-CTC decoder (``causal=False``: a conditional masked LM over the whole sequence, Higuchi et al., 2020)
and the AR attention baseline (``causal=True``, with an incremental ``step`` for search).

Pre-norm blocks: self-attention, cross-attention, feed-forward, each residual; a final LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from narspeech.nn.mask import make_pad_mask
from narspeech.nn.pos_enc import PositionalEncoding


@dataclass
class DecoderConfig:
    """Decoder sizes (saved in the checkpoint); ``d_model`` is the encoder's."""

    num_heads: int = 4
    ffn_dim: int = 576
    num_layers: int = 3
    dropout: float = 0.1


class DecoderBlock(nn.Module):
    def __init__(self, d: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.norm3 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_pad: torch.Tensor | None,
        self_pad: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        query_last: bool = False,
    ) -> torch.Tensor:
        """``x`` (B, L, d) -> (B, L, d), or (B, 1, d) for the last position only with ``query_last`` (the
        incremental step: keys and values still cover the whole prefix)."""
        h = self.norm1(x)
        q = h[:, -1:] if query_last else h
        res = x[:, -1:] if query_last else x
        a, _ = self.self_attn(q, h, h, key_padding_mask=self_pad, attn_mask=attn_mask, need_weights=False)
        y = res + self.dropout(a)
        h = self.norm2(y)
        a, _ = self.cross_attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)
        y = y + self.dropout(a)
        return y + self.dropout(self.ff(self.norm3(y)))


class TransformerDecoder(nn.Module):
    """Embedding + sinusoidal positions + ``num_layers`` pre-norm blocks + LayerNorm + output projection."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 3,
        dropout: float = 0.1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_enc = PositionalEncoding(d_model, dropout)
        self.layers = nn.ModuleList(DecoderBlock(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    @classmethod
    def from_config(cls, vocab_size: int, d_model: int, cfg: DecoderConfig, causal: bool) -> "TransformerDecoder":
        return cls(vocab_size, d_model, cfg.num_heads, cfg.ffn_dim, cfg.num_layers, cfg.dropout, causal)

    def _causal_mask(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)  # True = may not attend

    def forward(
        self, tokens: torch.Tensor, token_lens: torch.Tensor, memory: torch.Tensor, memory_lens: torch.Tensor
    ) -> torch.Tensor:
        """``tokens`` (B, L) ids (padding: any valid id), ``token_lens`` (B,) valid tokens, ``memory`` (B, T, d)
        encoder output, ``memory_lens`` (B,) valid frames -> logits (B, L, V); padded positions are garbage."""
        self_pad = make_pad_mask(token_lens, tokens.size(1))
        mem_pad = make_pad_mask(memory_lens, memory.size(1))
        # no masks at all when nothing is padded (batch 1): the fused attention paths are faster
        self_pad = self_pad if self_pad.any() else None
        mem_pad = mem_pad if mem_pad.any() else None
        attn_mask = self._causal_mask(tokens.size(1), tokens.device) if self.causal else None
        x = self.pos_enc(self.embed(tokens))
        for layer in self.layers:
            x = layer(x, memory, mem_pad, self_pad, attn_mask)
        return self.out(self.norm(x))

    def step(
        self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None, cache: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One incremental step of the causal decoder (all prefixes have the same length, no padding).

        ``tokens`` (N, l) prefixes starting with <sos>, ``memory`` (N, T, d), ``memory_pad`` (N, T) True at padded
        frames, ``cache`` the per-layer outputs (N, l-1, d) of the previous step (None at the first step)
        -> log-probabilities of the next token (N, V), new cache (per layer (N, l, d)).
        Each layer computes only the last position; earlier positions come from the cache (as ESPnet's decoder).
        """
        if not self.causal:
            raise RuntimeError("step() is for the causal (AR) decoder")
        if cache is None and tokens.size(1) != 1:
            raise ValueError("step() without a cache needs a prefix of length 1 (<sos>)")
        x = self.pos_enc(self.embed(tokens))
        new_cache: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            last = layer(x, memory, memory_pad, None, None, query_last=True)  # causal: the last query sees all
            x = last if cache is None else torch.cat([cache[i], last], dim=1)
            new_cache.append(x)
        return self.out(self.norm(x[:, -1])).log_softmax(-1), new_cache
