"""Phonemes for TTS: normalised English text -> espeak-ng IPA phones via ``phonemizer``, with the espeak-ng library of
the ``espeakng-loader`` wheel (no system package, no network).

One token per phone, primary/secondary stress attached to its vowel (``ˈoʊ``), no word-boundary token; sentence
punctuation (``, . ; : ? !``) becomes its own token, which the aligner gives the pause that follows it. The phone set
is built from the training text and saved in the model file (:class:`PhonemeTokenizer` state).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence

from narspeech.text.normalize import normalize_english
from narspeech.text.tokenizer import RESERVED, Tokenizer

PUNCTUATION = ",.;:?!"  # kept as pause tokens; other symbols (quotes, brackets) are dropped
_PUNCT_SPLIT = re.compile(f"([{re.escape(PUNCTUATION)}])")
_WORD_SEP = " | "
_lock = threading.Lock()  # espeak-ng's state is global to the process


class PhonemizerError(RuntimeError):
    """phonemizer or espeak-ng is not usable here."""


# phonemizer warns on every call where espeak-ng splits or joins words ("words count mismatch"); that is expected
# (numbers, contractions) and harmless here, since no word alignment is used
_quiet_logger = logging.getLogger(__name__).getChild("phonemizer")
_quiet_logger.setLevel(logging.ERROR)


@functools.lru_cache(maxsize=4)
def _backend(language: str):
    try:
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as e:
        raise PhonemizerError(f"phonemes need the 'phonemizer' and 'espeakng-loader' packages: {e}") from e
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    os.environ.setdefault("ESPEAK_DATA_PATH", espeakng_loader.get_data_path())
    try:
        return EspeakBackend(language, preserve_punctuation=True, punctuation_marks=PUNCTUATION, with_stress=True,
                             language_switch="remove-flags", logger=_quiet_logger)
    except RuntimeError as e:
        raise PhonemizerError(f"espeak-ng cannot phonemize language {language!r}: {e}") from e


def phonemize(texts: Sequence[str], language: str = "en-us") -> list[list[str]]:
    """Normalised phone tokens of each text (:func:`normalize_english` first for English); ``[]`` for a text with
    nothing to pronounce."""
    from phonemizer.separator import Separator

    norm = [normalize_english(t) if language.startswith("en") else " ".join(t.split()) for t in texts]
    todo = [i for i, t in enumerate(norm) if any(c.isalnum() for c in t)]
    out: list[list[str]] = [[] for _ in texts]
    if not todo:
        return out
    with _lock:
        phones = _backend(language).phonemize([norm[i] for i in todo], separator=Separator(phone=" ", word=_WORD_SEP),
                                              strip=True, njobs=1)
    for i, p in zip(todo, phones):
        out[i] = [tok for piece in p.replace("|", " ").split() for tok in _PUNCT_SPLIT.split(piece) if tok.strip()]
    return out


class PhonemeTokenizer(Tokenizer):
    """Text -> espeak-ng phones of ``language`` (the module docstring); ids after the reserved ones. Phones not in
    the token list encode as ``<unk>`` (callers report them: :meth:`unknown`)."""

    kind = "phoneme"

    def __init__(self, token_list: Sequence[str], language: str = "en-us") -> None:
        super().__init__(token_list)
        self.language = language

    def phones(self, text: str) -> list[str]:
        return phonemize([text], self.language)[0]

    def _ids(self, phones: Sequence[str]) -> list[int]:
        # punctuation the training text never had (e.g. a corpus without it) is dropped, not an unknown phone
        return self.tokens_to_ids(p for p in phones if p in self._index or p not in PUNCTUATION)

    def encode(self, text: str) -> list[int]:
        return self._ids(self.phones(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of many texts in one phonemizer call (much faster than one call per text)."""
        return [self._ids(p) for p in phonemize(texts, self.language)]

    def unknown(self, text: str) -> list[str]:
        """The phones of ``text`` that are not in the token list (punctuation aside)."""
        return [p for p in self.phones(text) if p not in self._index and p not in PUNCTUATION]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.token_list[i] for i in ids if i >= len(RESERVED))

    def state(self) -> dict:
        return {**super().state(), "language": self.language}

    @staticmethod
    def build_token_list(texts: Iterable[str], language: str = "en-us") -> list[str]:
        """Every phone and punctuation token of ``texts`` (sorted) after the reserved symbols."""
        seen: set[str] = set()
        for phones in phonemize(list(texts), language):
            seen.update(phones)
        return list(RESERVED) + sorted(seen - set(RESERVED))
