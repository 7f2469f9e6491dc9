"""FastSpeech 2 (Ren et al., ICLR 2021, "FastSpeech 2: Fast and High-Quality End-to-End Text to Speech"), with the
jointly trained aligner of Badlani et al. (2022) instead of the Montreal Forced Aligner.

Phoneme embeddings -> FFT-block encoder -> variance adaptor -> length regulator -> FFT-block decoder -> mel (+ an
optional postnet). The variance adaptor predicts, per phoneme, the log duration and the (normalised) pitch and energy;
pitch and energy are quantised into bins whose embeddings are added to the phoneme states. Training uses the true
values (durations from the aligner's monotonic path, or from the data dir's ``durations``; pitch and energy averaged
over each phoneme's frames as FastPitch does, or kept per frame with ``variance_level: frame``); synthesis uses the
predictions, scaled by the :class:`TTSOptions` controls. Every frame is generated in one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from narspeech.nat.regulator import average_by_duration, durations_from_float, length_regulate
from narspeech.nn.encoder import Encoder
from narspeech.nn.mask import make_pad_mask
from narspeech.registry import MODELS
from narspeech.train.loss import LossTerm
from narspeech.tts.aligner import (AlignmentEncoder, beta_binomial_log_prior, binarization_loss, durations_to_path,
                                   forward_sum_loss, monotonic_alignment)
from narspeech.tts.base import TTSModel, TTSOptions

SEMITONE = math.log(2.0) / 12.0  # in log-F0


@dataclass
class FastSpeech2Config:
    d_model: int = 256
    num_heads: int = 2
    ffn_dim: int = 1024
    kernel_size: int = 9  # the FFT blocks' feed-forward convolution
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.2
    predictor_channels: int = 256  # duration/pitch/energy predictors: 2 x (conv, ReLU, LayerNorm, dropout) + linear
    predictor_kernel: int = 3
    predictor_dropout: float = 0.5
    bins: int = 256  # quantisation bins of pitch and energy
    bin_range: float = 4.0  # bins cover [-bin_range, bin_range] standard deviations of the normalised values
    variance_level: str = "phoneme"  # "phoneme" (FastPitch averaging) or "frame" (values per mel frame)
    postnet_layers: int = 0  # Tacotron 2 postnet convolutions (0 = none, as in the paper)
    postnet_channels: int = 256
    aligner_channels: int = 80
    prior_scaling: float = 1.0  # beta-binomial prior's scaling (1.0 in the paper)
    bin_loss_start: int = 2000  # optimizer steps before the binarisation loss is switched on (weight 1)
    prior_steps: int = 8000  # the alignment prior is applied for this many steps, then dropped (0 = always)


class VariancePredictor(nn.Module):
    """(B, N, d) states -> (B, N) one value per position (FastSpeech 2's duration/pitch/energy predictor)."""

    def __init__(self, d: int, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(d, channels, kernel, padding=kernel // 2)
        self.norm1 = nn.LayerNorm(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.norm2 = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels, 1)

    def forward(self, h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = h.masked_fill(pad.unsqueeze(-1), 0.0).transpose(1, 2)
        x = self.dropout(self.norm1(torch.relu(self.conv1(x)).transpose(1, 2)))
        x = x.masked_fill(pad.unsqueeze(-1), 0.0).transpose(1, 2)
        x = self.dropout(self.norm2(torch.relu(self.conv2(x)).transpose(1, 2)))
        return self.out(x).squeeze(-1).masked_fill(pad, 0.0)


class QuantizedEmbedding(nn.Module):
    """A normalised value -> the embedding of its bin (``bins`` uniform bins over ``[-range, range]``)."""

    def __init__(self, bins: int, value_range: float, d: int) -> None:
        super().__init__()
        self.register_buffer("edges", torch.linspace(-value_range, value_range, bins - 1), persistent=False)
        self.embed = nn.Embedding(bins, d)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.embed(torch.bucketize(values.contiguous(), self.edges))


class Postnet(nn.Module):
    """Tacotron 2's residual convolution stack on the mel (tanh between layers)."""

    def __init__(self, n_mels: int, channels: int, layers: int, dropout: float) -> None:
        super().__init__()
        dims = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, 5, padding=2) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.transpose(1, 2)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            x = self.dropout(torch.tanh(x) if i < len(self.convs) - 1 else x)
        return mel + x.transpose(1, 2)


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the True positions of ``valid`` (same shape, or ``x`` with a trailing feature dim)."""
    if x.dim() > valid.dim():
        return (x * valid.unsqueeze(-1)).sum() / (valid.sum().clamp_min(1) * x.size(-1))
    return (x * valid).sum() / valid.sum().clamp_min(1)


@MODELS.register("fastspeech2")
class FastSpeech2(TTSModel):
    """See the module docstring. ``set_stats`` (from the task) gives the normalisation of mel, pitch and energy."""

    Config = FastSpeech2Config

    def __init__(self, vocab_size: int, n_mels: int, encoder: Encoder, decoder: Encoder,
                 duration: VariancePredictor, pitch: VariancePredictor, energy: VariancePredictor,
                 pitch_embed: QuantizedEmbedding, energy_embed: QuantizedEmbedding, postnet: Postnet | None,
                 aligner: AlignmentEncoder, variance_level: str = "phoneme", prior_scaling: float = 1.0,
                 bin_loss_start: int = 2000, prior_steps: int = 8000) -> None:
        super().__init__()
        if variance_level not in ("phoneme", "frame"):
            raise ValueError(f"variance_level must be 'phoneme' or 'frame', got {variance_level!r}")
        d = encoder.d_model
        self.embed = nn.Embedding(vocab_size, d)
        self.encoder, self.decoder = encoder, decoder
        self.duration, self.pitch, self.energy = duration, pitch, energy
        self.pitch_embed, self.energy_embed = pitch_embed, energy_embed
        self.mel_out = nn.Linear(decoder.d_model, n_mels)
        self.postnet = postnet
        self.aligner = aligner
        self.variance_level = variance_level
        self.prior_scaling, self.bin_loss_start, self.prior_steps = prior_scaling, bin_loss_start, prior_steps
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))
        self.register_buffer("pitch_stats", torch.tensor([math.log(120.0), 0.2]))  # log-F0 mean, std (all speakers)
        self.register_buffer("energy_stats", torch.tensor([0.0, 1.0]))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training steps seen (aligner schedule)

    @classmethod
    def from_config(cls, cfg: FastSpeech2Config, vocab_size: int, n_mels: int = 80) -> "FastSpeech2":
        def fft(layers: int) -> Encoder:
            return Encoder(cfg.d_model, "fft", cfg.d_model, cfg.num_heads, cfg.ffn_dim, layers, cfg.kernel_size,
                           cfg.dropout, subsampling_factor=1)

        def predictor() -> VariancePredictor:
            return VariancePredictor(cfg.d_model, cfg.predictor_channels, cfg.predictor_kernel, cfg.predictor_dropout)

        post = Postnet(n_mels, cfg.postnet_channels, cfg.postnet_layers, cfg.dropout) if cfg.postnet_layers else None
        return cls(vocab_size, n_mels, fft(cfg.encoder_layers), fft(cfg.decoder_layers), predictor(), predictor(),
                   predictor(), QuantizedEmbedding(cfg.bins, cfg.bin_range, cfg.d_model),
                   QuantizedEmbedding(cfg.bins, cfg.bin_range, cfg.d_model), post,
                   AlignmentEncoder(n_mels, cfg.d_model, cfg.aligner_channels), cfg.variance_level,
                   cfg.prior_scaling, cfg.bin_loss_start, cfg.prior_steps)

    def set_stats(self, stats) -> None:
        """Normalisation from the task's :class:`narspeech.tts.task.Stats`."""
        self.mel_mean.copy_(torch.tensor(stats.mel_mean))
        self.mel_std.copy_(torch.tensor(stats.mel_std).clamp_min(1e-3))
        self.pitch_stats.copy_(torch.tensor(stats.pitch_all))
        self.energy_stats.copy_(torch.tensor(stats.energy))

    def _encode(self, tokens: torch.Tensor, token_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(tokens.clamp_min(0))
        h, _ = self.encoder(emb, token_lens)
        return emb, h

    def _decode(self, h: torch.Tensor, durations: torch.Tensor, pitch: torch.Tensor, energy: torch.Tensor,
                max_len: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Phoneme states + variances -> (normalised mel, frame lengths, postnet mel or None)."""
        if self.variance_level == "phoneme":
            h = h + self.pitch_embed(pitch) + self.energy_embed(energy)
            frames, lens = length_regulate(h, durations, max_len)
        else:
            frames, lens = length_regulate(h, durations, max_len)
            frames = frames + self.pitch_embed(pitch[:, : frames.size(1)]) + self.energy_embed(energy[:, : frames.size(1)])
        out, _ = self.decoder(frames, lens.clamp_min(1))
        mel = self.mel_out(out)
        return mel, lens, (self.postnet(mel) if self.postnet is not None else None)

    def forward(self, batch: dict[str, torch.Tensor], **group) -> dict[str, LossTerm]:
        """``batch``: see :class:`TTSModel`. Losses: ``mel`` (L1, normalised), ``postnet``, ``duration`` (MSE of
        log(1 + d)), ``pitch``, ``energy`` (MSE), ``align`` (forward-sum), ``bin`` (binarisation)."""
        tokens, token_lens = batch["tokens"], batch["token_lens"]
        mel_lens = batch["mel_lens"]
        target = (batch["mel"] - self.mel_mean) / self.mel_std
        T = target.size(1)
        step = int(self.steps)
        if self.training:
            self.steps += 1
        emb, h = self._encode(tokens, token_lens)
        tok_pad = make_pad_mask(token_lens, tokens.size(1))
        frame_valid = ~make_pad_mask(mel_lens, T)
        terms: dict[str, LossTerm] = {}
        # 1. alignment: soft (aligner) and hard (monotonic path) -> durations
        use_prior = self.prior_steps <= 0 or step < self.prior_steps
        prior = beta_binomial_log_prior(token_lens, mel_lens, self.prior_scaling) if use_prior else None
        log_align = self.aligner(target, mel_lens, emb, token_lens, prior)
        terms["align"] = LossTerm(forward_sum_loss(log_align, token_lens, mel_lens))
        if "durations" in batch:
            durations = batch["durations"].masked_fill(tok_pad, 0)
        else:
            durations = monotonic_alignment(log_align, token_lens, mel_lens)
        hard = durations_to_path(durations, T)
        terms["bin"] = LossTerm(binarization_loss(log_align, hard), 1.0 if step >= self.bin_loss_start else 0.0)
        # 2. variance targets at the level the model predicts them
        if self.variance_level == "phoneme":
            pitch_t = average_by_duration(batch["pitch"], durations)
            energy_t = average_by_duration(batch["energy"], durations)
            var_valid = ~tok_pad
        else:
            pitch_t, energy_t, var_valid = batch["pitch"], batch["energy"], frame_valid
        # 3. predictors on the encoder output: per phoneme, or per frame on the regulated states
        log_d = self.duration(h, tok_pad)
        terms["duration"] = LossTerm(_masked_mean((log_d - torch.log1p(durations.float())).pow(2), ~tok_pad))
        if self.variance_level == "phoneme":
            p_pred, e_pred = self.pitch(h, tok_pad), self.energy(h, tok_pad)
        else:
            frames_h, _ = length_regulate(h, durations, T)
            p_pred, e_pred = self.pitch(frames_h, ~frame_valid), self.energy(frames_h, ~frame_valid)
        terms["pitch"] = LossTerm(_masked_mean((p_pred - pitch_t).pow(2), var_valid))
        terms["energy"] = LossTerm(_masked_mean((e_pred - energy_t).pow(2), var_valid))
        # 4. decoder with the true variances (teacher forcing, as in the paper)
        mel, _, post = self._decode(h, durations, pitch_t, energy_t, T)
        terms["mel"] = LossTerm(_masked_mean((mel - target).abs(), frame_valid))
        if post is not None:
            terms["postnet"] = LossTerm(_masked_mean((post - target).abs(), frame_valid))
        return terms

    @torch.inference_mode()
    def infer(self, tokens: torch.Tensor, token_lens: torch.Tensor, opts: TTSOptions = TTSOptions()) -> dict:
        """See :meth:`TTSModel.infer`; also returns ``durations`` (B, N) and ``pitch`` (B, N): Hz per token."""
        if opts.speed <= 0:
            raise ValueError(f"speed must be > 0, got {opts.speed}")
        _, h = self._encode(tokens, token_lens)
        tok_pad = make_pad_mask(token_lens, tokens.size(1))
        durations = durations_from_float(self.duration(h, tok_pad), token_lens, 1.0 / opts.speed)
        # every item gets at least one frame, so that the decoder and a vocoder have something to work on
        durations[:, 0] += (durations.sum(1) == 0).long() * (token_lens > 0).long()
        if self.variance_level == "phoneme":
            p, e = self.pitch(h, tok_pad), self.energy(h, tok_pad)
        else:
            frames_h, _ = length_regulate(h, durations)
            fpad = make_pad_mask(durations.sum(1), frames_h.size(1))
            p, e = self.pitch(frames_h, fpad), self.energy(frames_h, fpad)
        p_mean, p_std = self.pitch_stats[0], self.pitch_stats[1]
        p = p * opts.pitch_scale + opts.pitch_shift * SEMITONE / p_std
        e_mean, e_std = self.energy_stats[0], self.energy_stats[1]
        e = ((e * e_std + e_mean) * opts.energy_scale - e_mean) / e_std
        mel, lens, post = self._decode(h, durations, p, e, None)
        mel = (post if post is not None else mel) * self.mel_std + self.mel_mean
        p_tok = p if self.variance_level == "phoneme" else average_by_duration(p, durations)
        return {"mel": mel, "mel_lens": lens, "durations": durations, "pitch": torch.exp(p_tok * p_std + p_mean)}
