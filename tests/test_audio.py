"""Audio loading (formats, resampling, segments, errors) and features (fbank, speed perturbation, SpecAugment, CMVN)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, tone_speech

from narspeech.audio.features import (
    LOG_ENERGY_FLOOR,
    NUM_MEL_BINS,
    CMVNAccumulator,
    GlobalCMVN,
    SpecAugment,
    fbank,
    num_frames,
    speed_perturb,
)
from narspeech.audio.io import AudioError, audio_duration, load_audio


def _sine(seconds: float, sr: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------- fbank


def test_fbank_shape_one_second():
    feats = fbank(torch.from_numpy(_sine(1.0)))
    assert feats.shape == (98, NUM_MEL_BINS) == (98, 80)
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    assert num_frames(SR) == 98


@pytest.mark.parametrize("n", [400, 401, 559, 560, 1234, 8000, 16160, 24001])
def test_num_frames_matches_fbank(n):
    wav = torch.from_numpy(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
    assert fbank(wav).shape[0] == num_frames(n)


def test_num_frames_too_short():
    assert num_frames(0) == 0 and num_frames(399) == 0 and num_frames(400) == 1
    assert num_frames(8000, 8000) == 98


def test_fbank_of_digital_silence_is_floored():
    feats = fbank(torch.zeros(SR))
    assert feats.shape == (98, 80)
    assert torch.isfinite(feats).all()
    assert (feats >= LOG_ENERGY_FLOOR).all()
    # a tone has far more energy than silence in some band
    tone = fbank(torch.from_numpy(_sine(1.0)))
    assert tone.max() > feats.max() + 10


# ---------------------------------------------------------------- load_audio


def test_load_audio_float32_mono(tmp_path):
    x = tone_speech("bad")
    sf.write(tmp_path / "a.wav", x, SR, subtype="PCM_16")
    wav = load_audio(tmp_path / "a.wav")
    assert wav.dtype == torch.float32 and wav.dim() == 1 and wav.numel() == x.size
    assert np.allclose(wav.numpy(), x, atol=1.0 / 32768 + 1e-6)
    assert audio_duration(tmp_path / "a.wav") == pytest.approx(x.size / SR)


def test_load_audio_resamples_8k_to_16k(tmp_path):
    x = _sine(0.5, sr=8000, freq=300.0)
    sf.write(tmp_path / "n.wav", x, 8000, subtype="PCM_16")
    wav = load_audio(tmp_path / "n.wav", 16000)
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert abs(wav.numel() - 2 * x.size) <= 1
    # still a 300 Hz tone: dominant FFT bin of the resampled signal
    spec = np.abs(np.fft.rfft(wav.numpy()))
    assert abs(np.argmax(spec) * 16000 / wav.numel() - 300.0) < 5
    assert load_audio(tmp_path / "n.wav").numel() == x.size  # None keeps the file's rate
    assert load_audio(tmp_path / "n.wav", 8000).numel() == x.size


def test_stereo_raises_unless_allowed(tmp_path):
    left, right = _sine(0.2), np.zeros(int(0.2 * SR), dtype=np.float32)
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([left, right], 1), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="stereo.wav") as e:
        load_audio(p)
    assert "channels" in str(e.value)
    mono = load_audio(p, allow_stereo=True)
    assert mono.dim() == 1 and mono.numel() == left.size
    assert np.allclose(mono.numpy(), (left + right) / 2, atol=1e-6)


def test_corrupt_and_missing_files_raise_naming_the_file(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(p)
    with pytest.raises(AudioError, match="corrupt.wav"):
        audio_duration(p)
    with pytest.raises(AudioError, match="missing.flac"):
        load_audio(tmp_path / "missing.flac")


def test_segment_reading(tmp_path):
    x = (np.arange(SR * 2) / (SR * 2)).astype(np.float32) * 0.5  # a ramp, so positions can be checked
    p = tmp_path / "ramp.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    seg = load_audio(p, start=0.5, end=1.25)
    assert seg.numel() == int(0.75 * SR)
    assert np.allclose(seg.numpy(), x[SR // 2 : int(1.25 * SR)])
    assert load_audio(p, start=1.5).numel() == SR // 2  # end=-1: to the end of the file
    assert load_audio(p, end=0.1).numel() == SR // 10
    with pytest.raises(AudioError, match="ramp.wav"):
        load_audio(p, start=3.0, end=4.0)  # past the end: no samples


@pytest.mark.parametrize("fmt, subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_flac_and_ogg(tmp_path, fmt, subtype):
    x = _sine(0.5, freq=500.0)
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, SR, format=fmt, subtype=subtype)
    wav = load_audio(p, SR)
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert abs(wav.numel() - x.size) <= 1
    if fmt == "FLAC":  # lossless
        assert np.allclose(wav.numpy(), x, atol=1.0 / 32768 + 1e-6)
    else:  # lossy, but the same tone
        spec = np.abs(np.fft.rfft(wav.numpy()))
        assert abs(np.argmax(spec) * SR / wav.numel() - 500.0) < 5
    assert fbank(wav).shape == (num_frames(wav.numel()), 80)


# ---------------------------------------------------------------- speed perturbation


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_length(factor):
    x = torch.from_numpy(_sine(1.0, freq=400.0))
    y = speed_perturb(x, factor)
    assert abs(y.numel() - x.numel() / factor) <= 2
    # pitch changes with tempo (sox speed): 400 Hz becomes 400 * factor
    spec = np.abs(np.fft.rfft(y.numpy()))
    assert abs(np.argmax(spec) * SR / y.numel() - 400.0 * factor) < 5


def test_speed_perturb_identity():
    x = torch.randn(1000)
    assert speed_perturb(x, 1.0) is x


# ---------------------------------------------------------------- SpecAugment


def test_specaugment_identity_in_eval_and_masks_in_train():
    aug = SpecAugment(num_freq_masks=2, max_freq_width=20, num_time_masks=2, max_time_ratio=0.2)
    x = torch.randn(3, 200, 80) + 5.0  # no exact zeros
    lens = torch.tensor([200, 150, 60])
    aug.eval()
    assert torch.equal(aug(x, lens), x)
    aug.train()
    random.seed(0)
    y = aug(x.clone(), lens)
    assert y.shape == x.shape
    zero = y == 0
    assert zero.any()
    assert torch.equal(y[~zero], x[~zero])  # only masking, nothing else changed
    assert zero.float().mean() < 0.6
    # time masks stay inside each utterance's valid frames: a masked frame (all bins zero) is < len
    for b in range(3):
        full_rows = zero[b].all(-1).nonzero().flatten()
        assert (full_rows < lens[b]).all()
    # different draws on different calls
    assert not torch.equal(aug(x, lens), aug(x, lens))
    # the input is not modified
    x0 = x.clone()
    aug(x, lens)
    assert torch.equal(x, x0)


def test_specaugment_zero_masks_is_identity_in_train():
    aug = SpecAugment(num_freq_masks=0, num_time_masks=0).train()
    x = torch.randn(2, 50, 80)
    assert torch.equal(aug(x, torch.tensor([50, 30])), x)


# ---------------------------------------------------------------- CMVN


def test_global_cmvn_from_accumulator():
    g = torch.Generator().manual_seed(0)
    mean = torch.linspace(-3, 12, 80)
    std = torch.linspace(0.5, 4, 80)
    chunks = [torch.randn(n, 80, generator=g) * std + mean for n in (300, 517, 89)]
    acc = CMVNAccumulator()
    for c in chunks:
        acc.add(c)
    assert acc.count == 906
    m, s = acc.stats()
    allf = torch.cat(chunks)
    assert torch.allclose(m, allf.mean(0), atol=1e-4)
    assert torch.allclose(s, allf.std(0, unbiased=False), atol=1e-4)

    cmvn = GlobalCMVN(80)
    assert torch.equal(cmvn(allf.unsqueeze(0)), allf.unsqueeze(0))  # identity before set_stats
    cmvn.set_stats(m, s)
    y = cmvn(allf.unsqueeze(0))[0]
    assert y.shape == allf.shape
    assert y.mean(0).abs().max() < 1e-4
    assert (y.std(0, unbiased=False) - 1).abs().max() < 1e-3
    # stats are buffers: saved in the model's state dict
    assert set(cmvn.state_dict()) == {"mean", "istd"}

    with pytest.raises(ValueError, match="no frames"):
        CMVNAccumulator().stats()


def test_global_cmvn_constant_dimension_is_finite():
    acc = CMVNAccumulator(4)
    acc.add(torch.tensor([[1.0, 2.0, 0.0, 5.0], [3.0, 2.0, 0.0, 7.0]]))
    cmvn = GlobalCMVN(4)
    cmvn.set_stats(*acc.stats())
    y = cmvn(torch.tensor([[[2.0, 2.0, 0.0, 6.0]]]))
    assert torch.isfinite(y).all()
    assert torch.allclose(y, torch.zeros(1, 1, 4), atol=1e-3)
