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
    ) -> torch.Tensor:
        """``x`` (B, L, d) -> (B, L, d)."""
        h = self.norm1(x)
        a, _ = self.self_attn(h, h, h, key_padding_mask=self_pad, attn_mask=attn_mask, need_weights=False)
        y = x + self.dropout(a)
        h = self.norm2(y)
        a, _ = self.cross_attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)
        y = y + self.dropout(a)
        return y + self.dropout(self.ff(self.norm3(y)))

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of ``memory`` (A, T, d): each (A, H, T, d / H)."""
        d, attn = memory.size(-1), self.cross_attn
        k, v = nn.functional.linear(memory, attn.in_proj_weight[d:], attn.in_proj_bias[d:]).chunk(2, dim=-1)
        return _heads(k, attn.num_heads), _heads(v, attn.num_heads)

    def step(
        self,
        x: torch.Tensor,
        self_kv: tuple[torch.Tensor, torch.Tensor] | None,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The last position only: ``x`` (N, 1, d) its input, ``self_kv`` keys and values (N, H, l - 1, d / H) of the
        earlier positions (None for the first), ``memory_kv`` of A = N / k utterances (rows utterance-major),
        ``memory_mask`` (A, 1, 1, T) True where attention is allowed -> (N, 1, d), keys and values incl. this
        position. The same weights and operations as ``forward`` with the causal mask (the last query sees all)."""
        N, _, d = x.shape
        H = self.self_attn.num_heads
        q, k, v = nn.functional.linear(self.norm1(x), self.self_attn.in_proj_weight, self.self_attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = _heads(q, H), _heads(k, H), _heads(v, H)
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        a = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, 1, d)
        y = x + self.dropout(self.self_attn.out_proj(a))
        # the k hypotheses of an utterance are k queries against its memory: no copy of the memory per hypothesis
        mk, mv = memory_kv
        A = mk.size(0)
        W, b = self.cross_attn.in_proj_weight, self.cross_attn.in_proj_bias
        q = nn.functional.linear(self.norm2(y), W[:d], b[:d]).view(A, N // A, H, d // H).transpose(1, 2)
        a = nn.functional.scaled_dot_product_attention(q, mk, mv, attn_mask=memory_mask).transpose(1, 2).reshape(N, 1, d)
        y = y + self.dropout(self.cross_attn.out_proj(a))
        return y + self.dropout(self.ff(self.norm3(y))), (k, v)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, L, d) -> (N, H, L, d / H)."""
    N, L, d = x.shape
    return x.view(N, L, num_heads, d // num_heads).transpose(1, 2)


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
        if num_layers < 1:
            raise ValueError(f"decoder.num_layers must be >= 1, got {num_layers}")
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"decoder.num_heads {num_heads} must divide d_model {d_model}")
        self.causal = causal
        self.embed = nn.Embedding(vocab_size, d_model)
        # embeddings are scaled by sqrt(d) before the positions are added: drawn N(0, 1/d) they then match the
        # positions' scale (as fairseq's Transformer); N(0, 1) swamps the positions, which a masked LM needs to tell
        # its masks apart (measured: the Mask-CTC decoder learnt the tone corpus in ~150 steps instead of ~500)
        nn.init.normal_(self.embed.weight, 0.0, d_model**-0.5)
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
        self,
        tokens: torch.Tensor,
        token_lens: torch.Tensor,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``tokens`` (B, L) ids (padding: any valid id), ``token_lens`` (B,) valid tokens, ``memory`` (B, T, d)
        encoder output, ``memory_lens`` (B,) valid frames, ``extra`` (B, L, d) or None: vectors added to the input
        embeddings (e.g. Mask-CTC's token-level acoustic embeddings) -> logits (B, L, V); padded positions are
        garbage."""
        return self.out(self.states(tokens, token_lens, memory, memory_lens, extra))

    def states(
        self,
        tokens: torch.Tensor,
        token_lens: torch.Tensor,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """As :meth:`forward`, before the output projection -> (B, L, d_model) (what extra heads such as Improved
        Mask-CTC's length classifier read)."""
        self_pad = make_pad_mask(token_lens, tokens.size(1))
        mem_pad = make_pad_mask(memory_lens, memory.size(1))
        # no masks at all when nothing is padded (batch 1): the fused attention paths are faster
        self_pad = self_pad if self_pad.any() else None
        mem_pad = mem_pad if mem_pad.any() else None
        attn_mask = self._causal_mask(tokens.size(1), tokens.device) if self.causal else None
        x = self.embed(tokens)
        if extra is not None:
            # ``extra`` counts as added after the sqrt(d) scaling: vectors at the scale of the encoder's (LayerNorm'd)
            # output match the scaled embeddings and the positions, where scaled by sqrt(d) they would swamp the
            # positions a masked LM needs to tell its masks apart. Dividing here keeps one dropout over the sum.
            x = x + extra / self.pos_enc.xscale
        x = self.pos_enc(x)
        for layer in self.layers:
            x = layer(x, memory, mem_pad, self_pad, attn_mask)
        return self.norm(x)

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the cross-attention keys and values of ``memory`` (A, T, d), each (A, H, T, d / H): computed once
        per utterance and shared by its hypotheses in :meth:`step` (re-projecting the memory at every step for every
        hypothesis was ~90 % of the beam search's time)."""
        return [layer.memory_kv(memory) for layer in self.layers]

    def step(
        self,
        tokens: torch.Tensor,
        memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
        memory_pad: torch.Tensor | None,
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One incremental step of the causal decoder (all prefixes have the same length, no padding).

        ``tokens`` (N, l) prefixes starting with <sos>; N = A * k rows, the k hypotheses of each of A utterances
        consecutive (k = 1: one row per utterance); ``memory_kv`` from :meth:`memory_kv` of the A utterances,
        ``memory_pad`` (A, T) True at padded frames (None: nothing padded); ``cache`` per layer the self-attention
        keys and values (N, H, l - 1, d / H) of the earlier positions (None at the first step)
        -> log-probabilities of the next token (N, V), new cache (reorder its rows with the hypotheses).
        Each layer computes only the last position, as ESPnet's decoder; the result equals ``forward``'s.
        """
        if not self.causal:
            raise RuntimeError("step() is for the causal (AR) decoder")
        if (cache is None) != (tokens.size(1) == 1):
            raise ValueError("step() needs a cache exactly when the prefix is longer than <sos>")
        if tokens.size(0) % memory_kv[0][0].size(0):
            raise ValueError(f"{tokens.size(0)} prefixes are not k per each of {memory_kv[0][0].size(0)} utterances")
        x = self.pos_enc(self.embed(tokens))[:, -1:]  # embedding the prefix is cheap; it keeps one positional table
        mask = None if memory_pad is None else (~memory_pad)[:, None, None, :]
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, kv = layer.step(x, None if cache is None else cache[i], memory_kv[i], mask)
            new_cache.append(kv)
        return self.out(self.norm(x[:, -1])).log_softmax(-1), new_cache
