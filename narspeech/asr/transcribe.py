"""Library entry points for ASR inference: transcribe files, decode data directories.

Bad inputs never stop a batch job: each unreadable file is reported (named, with the reason) and skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from narspeech.asr.base import ASRDecodeOptions, ASRModel
from narspeech.audio.features import SAMPLE_RATE, check_length, fbank
from narspeech.audio.io import AudioError, load_audio
from narspeech.data.kaldi import Utterance
from narspeech.text.tokenizer import Tokenizer


@dataclass(frozen=True)
class Transcript:
    key: str  # utterance id or file stem
    text: str | None  # None when the input failed
    error: str | None = None  # why it failed


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def decode_features(
    model: ASRModel, tokenizer: Tokenizer, feats: Sequence[torch.Tensor], opts: ASRDecodeOptions = ASRDecodeOptions()
) -> list[str]:
    """Decode a list of (T_i, D) fbank matrices as one padded batch."""
    device = next(model.parameters()).device
    x = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True).to(device)
    lens = torch.tensor([f.size(0) for f in feats], device=device)
    return [tokenizer.decode(ids) for ids in model.infer(x, lens, opts)]


# Longest input decoded by default: self-attention memory grows with the square of the length, and the models are
# trained on utterances of seconds; a long recording is refused by name instead of exhausting memory.
MAX_SECONDS = 300.0


def utterance_features(u: Utterance, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = MAX_SECONDS) -> torch.Tensor:
    """The (T, D) fbank features of an utterance (of its segment when it has one); :class:`AudioError` naming the file
    when it cannot be read, is too long, or is too short for the encoder (checked before feature extraction)."""
    seg = u.segment
    wav = load_audio(u.audio, sample_rate, seg.start if seg else 0.0, seg.end if seg else -1.0, max_seconds=max_seconds)
    try:
        check_length(wav.numel(), sample_rate)
        return fbank(wav, sample_rate)
    except AudioError as e:
        raise AudioError(f"{u.audio}: {e}") from None


def readable_features(
    utts: Iterable[Utterance], skipped: list[str], sample_rate: int = SAMPLE_RATE
) -> Iterator[tuple[Utterance, torch.Tensor]]:
    """(utterance, its (T, D) fbank) for each readable utterance, in order; each unreadable one is reported on
    stderr with the reason, its id appended to ``skipped``, and the rest go on (for diagnostic tools)."""
    for u in utts:
        try:
            yield u, utterance_features(u, sample_rate)
        except AudioError as e:
            print(f"skipped utterance {u.utt_id}: {e}", file=sys.stderr)
            skipped.append(u.utt_id)


def ctc_outputs(
    model, utts: Iterable[Utterance], skipped: list[str], sample_rate: int = SAMPLE_RATE
) -> Iterator[tuple[Utterance, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(utterance, encoder output (1, T', d), its frames (1,), CTC log-posteriors (1, T', V)) for each readable
    utterance at batch 1, for the diagnostic tools (``model``: any model with ``encode`` and ``ctc_head``, in eval
    mode; iterate under ``torch.inference_mode()``); unreadable ones are skipped and reported as in
    :func:`readable_features`."""
    for u, feats in readable_features(utts, skipped, sample_rate):
        h, h_lens = model.encode(feats.unsqueeze(0), torch.tensor([feats.size(0)]))
        yield u, h, h_lens, model.ctc_head(h).log_softmax(-1)


def transcribe_utterances(
    model: ASRModel,
    tokenizer: Tokenizer,
    utts: Iterable[Utterance],
    batch_size: int = 1,
    opts: ASRDecodeOptions = ASRDecodeOptions(),
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = MAX_SECONDS,
) -> Iterator[Transcript]:
    """Yield one :class:`Transcript` per utterance, in order; failures carry ``error`` and no text.

    Utterances are sorted by length inside each chunk of ``16 * batch_size`` so padding stays small. A failure is
    always one utterance's: audio that cannot be used is named by :class:`AudioError`, and a batch whose decoding
    raises is decoded again one utterance at a time, so only the utterance that fails alone is reported.
    """
    utts = list(utts)
    chunk = max(1, 16 * batch_size)
    for group in _batches(utts, chunk):
        loaded: dict[str, torch.Tensor] = {}
        errors: dict[str, str] = {}
        for u in group:
            try:
                loaded[u.utt_id] = utterance_features(u, sample_rate, max_seconds)
            except AudioError as e:
                errors[u.utt_id] = str(e)
            except Exception as e:  # any other reader failure is still this file's, not the job's
                errors[u.utt_id] = f"{u.audio}: cannot read audio: {type(e).__name__}: {e}"
        ok = sorted((u for u in group if u.utt_id in loaded), key=lambda u: loaded[u.utt_id].size(0))
        texts: dict[str, str] = {}
        for b in _batches(ok, batch_size):
            try:
                hyps = decode_features(model, tokenizer, [loaded[u.utt_id] for u in b], opts)
            except Exception as e:
                if len(b) == 1:
                    errors[b[0].utt_id] = f"{b[0].audio}: decoding failed: {type(e).__name__}: {e}"
                    continue
                hyps = []
                for u in b:  # find the utterance that fails
                    try:
                        hyps += decode_features(model, tokenizer, [loaded[u.utt_id]], opts)
                    except Exception as e1:
                        errors[u.utt_id] = f"{u.audio}: decoding failed: {type(e1).__name__}: {e1}"
                        hyps.append(None)
            texts.update({u.utt_id: h for u, h in zip(b, hyps) if h is not None})
        for u in group:
            yield Transcript(u.utt_id, texts.get(u.utt_id), errors.get(u.utt_id))
