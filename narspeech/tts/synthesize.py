"""Text -> speech with a TTS model file: the library function behind ``narspeech synthesize`` (in the spirit of
ESPnet's ``Text2Speech``): normalise and phonemise, split long input at sentence ends, generate the mels in batches,
vocode (Griffin-Lim until a neural vocoder is given)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from narspeech.audio.mel import MelConfig
from narspeech.text.tokenizer import RESERVED, UNK_ID, Tokenizer
from narspeech.tts.base import TTSModel, TTSOptions
from narspeech.tts.task import encode_texts

log = logging.getLogger(__name__)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
MAX_CHARS = 2000  # one input longer than this is refused: split it into lines of the text file first


class TTSInputError(ValueError):
    """A text that cannot be synthesised; the message says why."""


@dataclass
class TTS:
    """A loaded TTS model file: the model, its tokenizer and its mel definition."""

    model: TTSModel
    tokenizer: Tokenizer
    mel: MelConfig
    device: torch.device

    @classmethod
    def load(cls, path: str, device: str | torch.device = "cpu") -> "TTS":
        from narspeech.train.checkpoint import CheckpointError, load_model
        from narspeech.tts.task import TTSTask

        model, task, cfg = load_model(path, device)
        if not isinstance(task, TTSTask) or not isinstance(model, TTSModel):
            raise CheckpointError(f"{path}: a {cfg.task!r} model file, not a TTS model")
        return cls(model.eval(), task.tokenizer, task.mel, torch.device(device))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (cut after ``. ! ?`` followed by white space)."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _problem(text: str, ids: Sequence[int] | None) -> str | None:
    """Why ``text`` cannot be synthesised, given the token ids of its sentences (None: not encoded yet)."""
    if not text.strip():
        return "empty text"
    if len(text) > MAX_CHARS:
        return f"{len(text)} characters, more than {MAX_CHARS}: split it into several lines"
    if ids is not None and not any(i >= len(RESERVED) for i in ids):
        return "nothing pronounceable in it (no phoneme the model knows)"
    return None


def check_text(text: str, tts: TTS) -> str | None:
    """Why ``text`` cannot be synthesised (None when it can)."""
    why = _problem(text, None)
    if why:
        return why
    return _problem(text, [i for ids in encode_texts(tts.tokenizer, split_sentences(text)) for i in ids])


def _vocode(mel: torch.Tensor, tts: TTS, vocoder: Callable | None) -> np.ndarray:
    if vocoder is not None:
        return np.asarray(vocoder(mel), dtype=np.float32)
    from narspeech.vocoder.griffin_lim import griffin_lim

    return griffin_lim(mel, tts.mel).numpy()


def synthesize(texts: Sequence[str], tts: TTS | str, vocoder: Callable | None = None, speed: float = 1.0,
               pitch_shift: float = 0.0, pitch_scale: float = 1.0, energy_scale: float = 1.0,
               batch_size: int = 8) -> list[dict]:
    """Speech for each text: ``{"wave": float32 (S,), "sample_rate", "mel": (T, n_mels), "durations": (N,) frames
    per token, "pitch": per-token Hz, "tokens": the phones}``.

    ``vocoder`` maps a (T, n_mels) log-mel to a waveform (default: Griffin-Lim). Each text is split at sentence ends
    and its sentences' mels are joined. :class:`TTSInputError` names the first text that cannot be synthesised
    (:func:`check_text`); phones the model does not know are dropped with a warning naming them."""
    if isinstance(tts, str):
        tts = TTS.load(tts)
    for i, t in enumerate(texts):  # the cheap checks before phonemising anything
        why = _problem(t, None)
        if why:
            raise TTSInputError(f"text {i + 1} ({t[:40]!r}): {why}")
    opts = TTSOptions(speed=speed, pitch_shift=pitch_shift, pitch_scale=pitch_scale, energy_scale=energy_scale)
    pieces = [(i, s) for i, t in enumerate(texts) for s in split_sentences(t)]
    ids = encode_texts(tts.tokenizer, [s for _, s in pieces])  # one phonemizer call for every sentence
    for i, t in enumerate(texts):
        why = _problem(t, [x for (owner, _), seq in zip(pieces, ids) if owner == i for x in seq])
        if why:
            raise TTSInputError(f"text {i + 1} ({t[:40]!r}): {why}")
    for (i, s), seq in zip(pieces, ids):
        if UNK_ID in seq:
            log.warning("text %d: phones not known to the model dropped in %r", i + 1, s)
    ids = [[x for x in seq if x != UNK_ID] for seq in ids]
    outs: list[dict | None] = [None] * len(pieces)
    order = sorted(range(len(pieces)), key=lambda k: len(ids[k]))
    for start in range(0, len(order), batch_size):
        chunk = [k for k in order[start : start + batch_size] if ids[k]]
        if not chunk:
            continue
        tok = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids[k]) for k in chunk], batch_first=True,
                                              padding_value=-1).to(tts.device)
        lens = torch.tensor([len(ids[k]) for k in chunk], device=tts.device)
        res = tts.model.infer(tok, lens, opts)
        for j, k in enumerate(chunk):
            n = len(ids[k])
            outs[k] = {"mel": res["mel"][j, : int(res["mel_lens"][j])].float().cpu(),
                       "durations": res["durations"][j, :n].cpu(), "pitch": res["pitch"][j, :n].float().cpu(),
                       "tokens": tts.tokenizer.ids_to_tokens(ids[k])}
    results = []
    for i in range(len(texts)):
        parts = [o for (owner, _), o in zip(pieces, outs) if owner == i and o is not None]
        mel = torch.cat([p["mel"] for p in parts])
        results.append({"wave": _vocode(mel, tts, vocoder), "sample_rate": tts.mel.sample_rate, "mel": mel,
                        "durations": torch.cat([p["durations"] for p in parts]),
                        "pitch": torch.cat([p["pitch"] for p in parts]),
                        "tokens": [t for p in parts for t in p["tokens"]]})
    return results
