"""TTS building blocks: hifi-gan's mel, Praat pitch, the length regulator, the aligner's prior and monotonic path,
text normalisation and phonemes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from narspeech.audio.io import AudioError
from narspeech.audio.mel import MelConfig, energy, interpolate_unvoiced, log_mel, pitch
from narspeech.nat.regulator import average_by_duration, durations_from_float, length_regulate
from narspeech.text.normalize import normalize_english
from narspeech.tts.aligner import beta_binomial_log_prior, forward_sum_loss, monotonic_alignment


def reference_mel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """jik876/hifi-gan's mel_spectrogram written out in numpy, frame by frame (frames, n_mels)."""
    import librosa

    pad = (cfg.n_fft - cfg.hop_length) // 2
    x = np.pad(y.astype(np.float64), (pad, pad), mode="reflect")
    n = np.arange(cfg.win_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)  # periodic Hann (torch.hann_window's default)
    window = np.pad(window, ((cfg.n_fft - cfg.win_length) // 2, (cfg.n_fft - cfg.win_length + 1) // 2))
    frames = 1 + (len(x) - cfg.n_fft) // cfg.hop_length
    basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    out = []
    for t in range(frames):
        spec = np.fft.rfft(x[t * cfg.hop_length : t * cfg.hop_length + cfg.n_fft] * window)
        mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
        out.append(np.log(np.maximum(basis @ mag, 1e-5)))
    return np.stack(out)


def test_mel_matches_hifigan_definition():
    cfg = MelConfig()
    rng = np.random.default_rng(0)
    t = np.arange(22050 // 2) / 22050
    y = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = log_mel(torch.from_numpy(y), cfg).numpy()
    ref = reference_mel(y, cfg)
    assert ours.shape == ref.shape == (y.size // cfg.hop_length, 80)
    # float32 STFT vs float64 reference: the log-mel agrees to 1e-4 absolute where the energy is above the clamp
    assert np.abs(ours - ref).max() < 1e-4
    # and exactly (1e-5 relative to the magnitude) before the log
    assert np.allclose(np.exp(ours), np.exp(ref), rtol=1e-4, atol=1e-5)


def test_mel_of_too_short_or_broken_audio_is_named():
    with pytest.raises(AudioError, match="too short"):
        log_mel(torch.zeros(100))
    with pytest.raises(AudioError, match="non-finite"):
        log_mel(torch.full((4000,), float("nan")))


@pytest.mark.parametrize("f0", [110.0, 220.0, 310.0])
def test_pitch_of_a_tone_within_two_percent(f0):
    cfg = MelConfig()
    t = np.arange(int(0.6 * cfg.sample_rate)) / cfg.sample_rate
    y = 0.5 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 2 * f0 * t)
    p = pitch(torch.from_numpy(y.astype(np.float32)), cfg)
    assert p.numel() == len(y) // cfg.hop_length == energy(torch.from_numpy(y.astype(np.float32)), cfg).numel()
    voiced = p[p > 0]
    assert voiced.numel() > 0.8 * p.numel()
    assert abs(float(voiced.median()) - f0) / f0 < 0.02


def test_pitch_is_zero_on_noise_and_interpolated_between_voiced_frames():
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal(11025).astype(np.float32) * 0.1)
    assert float((pitch(noise) > 0).float().mean()) < 0.2
    f0 = torch.tensor([0.0, 100.0, 0.0, 0.0, 160.0, 0.0])
    assert interpolate_unvoiced(f0).tolist() == pytest.approx([100, 100, 120, 140, 160, 160])
    assert interpolate_unvoiced(torch.zeros(3)).tolist() == [0, 0, 0]


def slow_length_regulate(h: torch.Tensor, durations: torch.Tensor) -> list[torch.Tensor]:
    return [torch.cat([h[b, n].expand(int(durations[b, n]), -1) for n in range(h.size(1))]) for b in range(h.size(0))]


def test_length_regulator_equals_slow_reference():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 7, 5, generator=g)
    d = torch.randint(0, 4, (3, 7), generator=g)
    d[2, 5:] = 0  # a padded item
    out, lens = length_regulate(h, d)
    ref = slow_length_regulate(h, d)
    assert lens.tolist() == [r.size(0) for r in ref] == d.sum(1).tolist()
    for b, r in enumerate(ref):
        assert torch.equal(out[b, : r.size(0)], r)
        assert (out[b, r.size(0) :] == 0).all()
    back = average_by_duration(out[..., 0], d)
    assert torch.allclose(back, torch.where(d > 0, h[..., 0], torch.zeros(())), atol=1e-6)


def test_speed_two_halves_the_frames():
    log_d = torch.log1p(torch.tensor([[4.0, 6.0, 8.0, 2.0, 10.0, 0.0]]))
    lens = torch.tensor([5])
    d1 = durations_from_float(log_d, lens, 1.0)
    d2 = durations_from_float(log_d, lens, 0.5)
    assert d1.tolist() == [[4, 6, 8, 2, 10, 0]]
    assert int(d2.sum()) * 2 == int(d1.sum())


def test_beta_binomial_prior_matches_scipy():
    from scipy.stats import betabinom

    text_lens, mel_lens = torch.tensor([5, 3]), torch.tensor([12, 7])
    lp = beta_binomial_log_prior(text_lens, mel_lens)
    for b in range(2):
        N, T = int(text_lens[b]), int(mel_lens[b])
        for t in range(1, T + 1):
            ref = betabinom(N - 1, t, T - t + 1).logpmf(np.arange(N))
            assert np.allclose(lp[b, t - 1, :N].numpy(), ref, atol=1e-4)
        assert (lp[b, T:] == 0).all() and (lp[b, :, N:] == 0).all()


def _brute_force_best(scores: np.ndarray) -> float:
    T, N = scores.shape
    best = -math.inf
    import itertools

    for cuts in itertools.combinations(range(1, T), N - 1):  # token n starts at frame cuts[n-1]
        bounds = (0, *cuts, T)
        best = max(best, sum(scores[bounds[n] : bounds[n + 1], n].sum() for n in range(N)))
    return best


def test_monotonic_alignment_is_the_best_path_and_sums_to_frames():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 9, 4, generator=g)
    text_lens, mel_lens = torch.tensor([4, 3]), torch.tensor([9, 6])
    d = monotonic_alignment(scores, text_lens, mel_lens)
    assert d.sum(1).tolist() == mel_lens.tolist()
    assert (d[0] >= 1).all() and (d[1, :3] >= 1).all() and d[1, 3] == 0
    for b in range(2):
        N, T = int(text_lens[b]), int(mel_lens[b])
        s = scores[b, :T, :N].numpy()
        ends = np.cumsum(d[b, :N].numpy())
        got = sum(s[ends[n] - d[b, n].item() : ends[n], n].sum() for n in range(N))
        assert got == pytest.approx(_brute_force_best(s), abs=1e-5)
    with pytest.raises(ValueError, match="one frame per token"):
        monotonic_alignment(scores, torch.tensor([4, 8]), torch.tensor([9, 6]))


def test_forward_sum_loss_prefers_the_diagonal():
    T, N = 12, 4
    diag = torch.full((1, T, N), -10.0)
    for t in range(T):
        diag[0, t, min(N - 1, t * N // T)] = 0.0
    anti = diag.flip(-1)
    lens = (torch.tensor([N]), torch.tensor([T]))
    assert forward_sum_loss(diag, *lens) < forward_sum_loss(anti, *lens)


def test_normalize_english():
    assert normalize_english("Dr. Smith paid $3.50 on the 2nd, 12% off.") == \
        "doctor Smith paid three dollars and fifty cents on the second, twelve percent off."
    assert normalize_english("No. 7 in 1999 cost £1,001.") == \
        "number seven in nineteen ninety nine cost one thousand and one pounds."
    assert normalize_english("  ") == ""


def test_phonemes_keep_punctuation_as_tokens():
    pytest.importorskip("phonemizer")
    from narspeech.text.phonemes import PhonemeTokenizer, phonemize
    from narspeech.text.tokenizer import UNK_ID

    p = phonemize(["Hello, world!", "...", "42"])
    assert p[0][-1] == "!" and "," in p[0] and p[1] == [] and len(p[2]) > 4
    tok = PhonemeTokenizer(PhonemeTokenizer.build_token_list(["Hello, world!"]))
    assert UNK_ID not in tok.encode("hello world") and UNK_ID in tok.encode("zebra")
    assert tok.decode(tok.encode("world, hello")).startswith("w")
    assert tok.encode_batch(["hello", "world"]) == [tok.encode("hello"), tok.encode("world")]


def test_phoneme_tokenizer_saves_and_loads(tmp_path):
    pytest.importorskip("phonemizer")
    from narspeech.text.phonemes import PhonemeTokenizer
    from narspeech.text.tokenizer import load_tokenizer, save_tokenizer, tokenizer_from_state

    tok = PhonemeTokenizer(PhonemeTokenizer.build_token_list(["a quick test"], "en-gb"), "en-gb")
    save_tokenizer(tok, tmp_path / "tok")
    for back in (load_tokenizer(tmp_path / "tok"), tokenizer_from_state(tok.state())):
        assert isinstance(back, PhonemeTokenizer) and back.language == "en-gb"
        assert back.token_list == tok.token_list


def test_mel_cepstral_distortion_and_f0_rmse():
    from narspeech.metrics import f0_errors, mel_cepstral_distortion

    rng = np.random.default_rng(0)
    a = np.cumsum(rng.standard_normal((60, 80)), axis=0) * 0.1 - 5
    same = mel_cepstral_distortion(a, a)
    assert same.mcd == pytest.approx(0.0, abs=1e-9) and len(same.path) == 60
    stretched = mel_cepstral_distortion(a, np.repeat(a, 2, axis=0))  # DTW absorbs a slower rate exactly
    assert stretched.mcd == pytest.approx(0.0, abs=1e-9)
    noisy = mel_cepstral_distortion(a, a + 0.3 * rng.standard_normal(a.shape))
    assert 0.5 < noisy.mcd < 10  # the few-dB scale of a cepstral distance
    f0 = np.where(np.arange(60) % 10 < 7, 200.0, 0.0)
    e = f0_errors(f0, f0 * 1.1, same.path)
    assert (e.rmse, e.gpe, e.fine_rmse, e.frames) == (pytest.approx(20.0), 0.0, pytest.approx(20.0), 42)
    octave = f0 * 1.05
    octave[:3] *= 2  # a tracker's octave jump on 3 of the 42 voiced frames
    e = f0_errors(f0, octave, same.path)
    assert e.gpe == pytest.approx(3 / 42) and e.fine_rmse == pytest.approx(10.0) and e.rmse > 50
    assert f0_errors(f0, np.zeros(60), same.path) is None
