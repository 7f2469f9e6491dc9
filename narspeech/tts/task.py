"""The TTS task: Kaldi data dirs (``text``, ``utt2spk``, optionally ``durations``) and their dumped features
(``narspeech dump --kind mel --kind pitch --kind energy``: hifi-gan log-mel, F0, energy on one frame grid) ->
batches of phoneme/character ids and normalised targets.

Pitch is log-F0 with unvoiced frames interpolated, normalised per speaker (mean/std over the speaker's voiced training
frames); energy and the mel bins are normalised globally. The statistics and the mel definition are saved in the model
file, so synthesis needs nothing else. The validation metric is the loss of what synthesis uses (:meth:`evaluate`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from narspeech.audio.mel import MelConfig, interpolate_unvoiced
from narspeech.data.dump import load_feature, read_feats_scp
from narspeech.data.kaldi import DataDirError, read_kv
from narspeech.registry import TASKS
from narspeech.tasks.base import Task, TaskDataset
from narspeech.text.normalize import normalize_english
from narspeech.text.tokenizer import Tokenizer, load_tokenizer, tokenizer_from_state

log = logging.getLogger(__name__)
IGNORE_ID = -1
FEATURES = {"mel": "feats", "pitch": "pitch", "energy": "energy"}  # target -> the scp narspeech dump writes
SYNTH_TERMS = ("mel", "postnet", "duration", "pitch", "energy")  # loss terms of what synthesis uses


@dataclass
class TTSDataConfig:
    train: list[str] = field(default_factory=list)  # Kaldi data dirs: text, utt2spk (+ durations from TextGrids)
    valid: list[str] = field(default_factory=list)
    dump: str = "dump"  # the features of data dir D are indexed in <dump>/<name of D>/{feats,pitch,energy}.scp
    tokenizer: str = ""  # a phoneme (or char) tokenizer dir: `narspeech tokens --kind phoneme`
    sample_rate: int = 22050  # of the dumped features (hifi-gan's mel definition at this rate)
    max_frames: int = 8000  # mel frames per batch, padding included
    max_frames_per_utt: int = 1000  # longer training utterances are skipped (and reported); 1000 frames = 11.6 s
    num_workers: int = 0


@dataclass(frozen=True)
class TTSExample:
    key: str
    tokens: torch.Tensor  # (N,) int64
    mel: torch.Tensor  # (T, n_mels) log-mel
    pitch: torch.Tensor  # (T,) normalised log-F0, unvoiced frames interpolated
    energy: torch.Tensor  # (T,) normalised
    durations: torch.Tensor | None  # (N,) frames per token, from the data dir's `durations`


def encode_texts(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of TTS input texts: phonemes of the normalised text, or its lower-cased characters."""
    if hasattr(tok, "encode_batch"):
        return tok.encode_batch(texts)
    return [tok.encode(normalize_english(t).lower()) for t in texts]


@dataclass(frozen=True)
class Stats:
    """Normalisation statistics of the training data (saved in the model file)."""

    mel_mean: list[float]
    mel_std: list[float]
    energy: tuple[float, float]  # mean, std
    pitch: dict[str, tuple[float, float]]  # speaker -> mean, std of log-F0 over voiced frames
    pitch_all: tuple[float, float]  # over all speakers: for speakers not seen in training

    def pitch_of(self, speaker: str) -> tuple[float, float]:
        return self.pitch.get(speaker, self.pitch_all)


def _mean_std(s: float, ss: float, n: int) -> tuple[float, float]:
    m = float(s) / max(n, 1)  # plain floats: numpy scalars would not load with weights_only=True
    return m, math.sqrt(max(float(ss) / max(n, 1) - m * m, 1e-8))


def compute_stats(indexes: Sequence[dict[str, dict[str, str]]], utt2spk: dict[str, str]) -> Stats:
    """One pass over the training features (float64 sums)."""
    mel_s = mel_ss = None
    mel_n = 0
    e = [0.0, 0.0, 0]
    f: dict[str, list[float]] = {}
    for index in indexes:
        for utt, path in index["mel"].items():
            m = np.asarray(load_feature(path), dtype=np.float64)
            mel_s = m.sum(0) if mel_s is None else mel_s + m.sum(0)
            mel_ss = (m * m).sum(0) if mel_ss is None else mel_ss + (m * m).sum(0)
            mel_n += m.shape[0]
            en = np.asarray(load_feature(index["energy"][utt]), dtype=np.float64)
            e[0] += en.sum()
            e[1] += (en * en).sum()
            e[2] += en.size
            f0 = np.asarray(load_feature(index["pitch"][utt]), dtype=np.float64)
            lf = np.log(f0[f0 > 0])
            acc = f.setdefault(utt2spk.get(utt, utt), [0.0, 0.0, 0])
            acc[0] += lf.sum()
            acc[1] += (lf * lf).sum()
            acc[2] += lf.size
    if mel_s is None:
        raise DataDirError("no training features to compute statistics from")
    mean = mel_s / mel_n
    std = np.sqrt(np.maximum(mel_ss / mel_n - mean * mean, 1e-8))
    tot = [sum(a[i] for a in f.values()) for i in range(3)]
    if tot[2] == 0:
        raise DataDirError("no voiced frame in the training pitch: is the audio speech?")
    return Stats(mean.tolist(), std.tolist(), _mean_std(*e), {k: _mean_std(*a) for k, a in f.items() if a[2]},
                 _mean_std(*tot))


class TTSDataset(TaskDataset):
    """Token ids and normalised feature targets; ``lengths`` are mel frames."""

    def __init__(self, keys: list[str], tokens: list[list[int]], index: dict[str, dict[str, str]],
                 frames: list[int], speakers: list[str], durations: dict[str, list[int]], stats: Stats,
                 problems: list[tuple[str, str]]) -> None:
        self.keys, self.tokens, self.index, self.frames = keys, tokens, index, frames
        self.speakers, self.durations, self.stats, self.problems = speakers, durations, stats, problems

    @property
    def lengths(self) -> list[int]:
        return self.frames

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, indices: Sequence[int]) -> "TTSDataset":
        pick = list(indices)
        return TTSDataset([self.keys[i] for i in pick], [self.tokens[i] for i in pick], self.index,
                          [self.frames[i] for i in pick], [self.speakers[i] for i in pick], self.durations,
                          self.stats, list(self.problems))

    def __getitem__(self, i: int) -> TTSExample | None:
        key = self.keys[i]
        try:
            mel = torch.from_numpy(np.array(load_feature(self.index["mel"][key]), dtype=np.float32))
            f0 = torch.from_numpy(np.array(load_feature(self.index["pitch"][key]), dtype=np.float32))
            en = torch.from_numpy(np.array(load_feature(self.index["energy"][key]), dtype=np.float32))
        except (OSError, ValueError) as e:
            log.warning("skipping %s: cannot read its features: %s", key, e)
            return None
        m, s = self.stats.pitch_of(self.speakers[i])
        lf0 = interpolate_unvoiced(f0)
        pitch = torch.where(lf0 > 0, (lf0.clamp_min(1e-3).log() - m) / s, torch.zeros_like(lf0))
        e_m, e_s = self.stats.energy
        dur = self.durations.get(key)
        return TTSExample(key, torch.tensor(self.tokens[i], dtype=torch.long), mel, pitch, (en - e_m) / e_s,
                          None if dur is None else torch.tensor(dur, dtype=torch.long))


def collate_tts(examples: Sequence[TTSExample | None]) -> dict | None:
    ex = [e for e in examples if e is not None]
    if not ex:
        return None
    pad = torch.nn.utils.rnn.pad_sequence
    batch = {
        "utt_ids": [e.key for e in ex],
        "tokens": pad([e.tokens for e in ex], batch_first=True, padding_value=IGNORE_ID),
        "token_lens": torch.tensor([e.tokens.numel() for e in ex]),
        "mel": pad([e.mel for e in ex], batch_first=True),
        "mel_lens": torch.tensor([e.mel.size(0) for e in ex]),
        "pitch": pad([e.pitch for e in ex], batch_first=True),
        "energy": pad([e.energy for e in ex], batch_first=True),
    }
    if all(e.durations is not None for e in ex):
        batch["durations"] = pad([e.durations for e in ex], batch_first=True)
    return batch


def _feature_index(data_dir: str, dump: str) -> dict[str, dict[str, str]]:
    base = Path(dump) / Path(data_dir).name
    index = {}
    for target, scp in FEATURES.items():
        path = base / f"{scp}.scp"
        if not path.is_file():
            raise DataDirError(f"{path}: no such file; extract the TTS features of {data_dir} first: "
                               f"narspeech dump --data {data_dir} --out-dir {dump} --kind mel --kind pitch --kind energy")
        index[target] = read_feats_scp(path)
    return index


@TASKS.register("tts")
class TTSTask(Task):
    """Text -> log-mel with pitch and energy targets (see the module docstring)."""

    DataConfig = TTSDataConfig
    default_model = "fastspeech2"
    metric = "valid_synth_loss"
    batch_unit = "frames"
    item_noun = "utterances"

    def __init__(self, data: TTSDataConfig, tokenizer: Tokenizer, mel: MelConfig, stats: Stats) -> None:
        super().__init__(data)
        self.tokenizer, self.mel, self.stats = tokenizer, mel, stats

    @classmethod
    def create(cls, data: TTSDataConfig) -> "TTSTask":
        tok = load_tokenizer(data.tokenizer)
        utt2spk = {k: v for d in data.train for k, v in _read_optional(Path(d) / "utt2spk").items()}
        stats = compute_stats([_feature_index(d, data.dump) for d in data.train], utt2spk)
        return cls(data, tok, MelConfig(sample_rate=data.sample_rate), stats)

    @classmethod
    def from_state(cls, data: TTSDataConfig, state: dict) -> "TTSTask":
        s = state["stats"]
        stats = Stats(s["mel_mean"], s["mel_std"], tuple(s["energy"]), {k: tuple(v) for k, v in s["pitch"].items()},
                      tuple(s["pitch_all"]))
        return cls(data, tokenizer_from_state(state["tokenizer"]), MelConfig(**state["mel"]), stats)

    def state(self) -> dict:
        s = self.stats
        return {"tokenizer": self.tokenizer.state(), "mel": self.mel.state(),
                "stats": {"mel_mean": s.mel_mean, "mel_std": s.mel_std, "energy": list(s.energy),
                          "pitch": {k: list(v) for k, v in s.pitch.items()}, "pitch_all": list(s.pitch_all)}}

    def model_args(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "n_mels": self.mel.n_mels}

    def init_model(self, model: torch.nn.Module) -> None:
        if hasattr(model, "set_stats"):
            model.set_stats(self.stats)

    @property
    def max_batch(self) -> int:
        return self.data.max_frames

    def dataset(self, dirs: Sequence[str], train: bool, seed: int) -> TTSDataset:
        keys, texts, frames, speakers = [], [], [], []
        index: dict[str, dict[str, str]] = {t: {} for t in FEATURES}
        durations: dict[str, list[int]] = {}
        problems: list[tuple[str, str]] = []
        for d in dirs:
            text = read_kv(Path(d) / "text", allow_empty_value=True)
            utt2spk = _read_optional(Path(d) / "utt2spk")
            dur = {k: v.split() for k, v in _read_optional(Path(d) / "durations").items()}
            idx = _feature_index(d, self.data.dump)
            for k, t in text.items():
                missing = [target for target in FEATURES if k not in idx[target]]
                if missing:
                    problems.append((k, f"no {'/'.join(missing)} features in {self.data.dump}"))
                    continue
                keys.append(k)
                texts.append(t)
                speakers.append(utt2spk.get(k, k))
                frames.append(int(load_feature(idx["mel"][k]).shape[0]))
                for target in FEATURES:
                    index[target][k] = idx[target][k]
                if k in dur:
                    durations[k] = [int(x) for x in dur[k]]
        if not keys:
            raise DataDirError(f"no utterances with features in {' '.join(dirs)}")
        tokens = encode_texts(self.tokenizer, texts)
        keep = []
        for i, (k, ids) in enumerate(zip(keys, tokens)):
            why = None
            if not ids:
                why = "nothing to pronounce in its text"
            elif frames[i] < len(ids):
                why = f"{frames[i]} mel frames for {len(ids)} tokens (at least one frame per token needed)"
            elif train and frames[i] > self.data.max_frames_per_utt:
                why = f"{frames[i]} mel frames, more than data.max_frames_per_utt={self.data.max_frames_per_utt}"
            elif k in durations and (len(durations[k]) != len(ids) or sum(durations[k]) != frames[i]):
                why = (f"durations give {len(durations[k])} tokens / {sum(durations[k])} frames, the text and mel "
                       f"{len(ids)} / {frames[i]}")
            if why:
                problems.append((k, why))
            else:
                keep.append(i)
        return TTSDataset([keys[i] for i in keep], [tokens[i] for i in keep], index, [frames[i] for i in keep],
                          [speakers[i] for i in keep], durations, self.stats, problems)

    def collate(self, items: Sequence[Any]) -> dict | None:
        return collate_tts(items)

    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        """``valid_synth_loss``: the unweighted sum of the loss terms of what synthesis uses (mel, postnet,
        duration, pitch, energy), per utterance. Unlike ``valid_loss`` it leaves out the aligner's terms, whose
        weights change during training (the binarisation loss switches on), so epochs compare fairly."""
        from narspeech.tts.base import TTSModel

        if not isinstance(model, TTSModel):
            return {}
        tot, n = 0.0, 0
        with torch.no_grad():
            for batch in batches:
                terms = model(batch)
                b = len(batch["utt_ids"])
                tot += b * sum(float(t.value) for k, t in terms.items() if k in SYNTH_TERMS)
                n += b
        return {"valid_synth_loss": tot / n} if n else {}


def _read_optional(path: Path) -> dict[str, str]:
    return read_kv(path) if path.is_file() else {}
