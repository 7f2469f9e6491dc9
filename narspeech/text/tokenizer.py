"""Tokenizers with the reserved ids every narspeech model shares.

Id layout (fixed so that CTC, Mask-CTC, Imputer and the AR baselines agree on it):

    0 <blank>   CTC blank / padding of token sequences
    1 <unk>     out-of-vocabulary symbol
    2 <mask>    the masked-token symbol of Mask-CTC / CMLM / Imputer
    3 <sos/eos> start and end of sequence for AR decoders (one id, as in ESPnet)
    4 ...       the units of the tokenizer (characters or SentencePiece pieces)

The token list is saved inside every checkpoint so a model file is self-contained.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

BLANK = "<blank>"
UNK = "<unk>"
MASK = "<mask>"
SOS_EOS = "<sos/eos>"
RESERVED: tuple[str, ...] = (BLANK, UNK, MASK, SOS_EOS)
BLANK_ID, UNK_ID, MASK_ID, SOS_EOS_ID = range(len(RESERVED))
# Word separator of the character tokenizer; "▁" is also what SentencePiece uses.
SPACE = "▁"


class Tokenizer(abc.ABC):
    """Maps text to token ids and back; ``token_list[i]`` is the symbol of id ``i``."""

    kind: str

    def __init__(self, token_list: Sequence[str]) -> None:
        if tuple(token_list[: len(RESERVED)]) != RESERVED:
            raise ValueError(f"token list must start with the reserved symbols {RESERVED}, got {list(token_list[:4])}")
        if len(set(token_list)) != len(token_list):
            raise ValueError("token list has duplicate symbols")
        self.token_list: tuple[str, ...] = tuple(token_list)
        self._index = {t: i for i, t in enumerate(self.token_list)}

    @property
    def vocab_size(self) -> int:
        return len(self.token_list)

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.token_list[i] for i in ids]

    def tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self._index.get(t, UNK_ID) for t in tokens]

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text -> ids (no reserved ids other than <unk>)."""

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; reserved ids are dropped."""

    def state(self) -> dict:
        """Plain-data description stored in checkpoints (loadable with weights_only=True)."""
        return {"kind": self.kind, "token_list": list(self.token_list)}


class CharTokenizer(Tokenizer):
    """Characters, with spaces written as ``▁`` so that a word boundary is a token."""

    kind = "char"

    def encode(self, text: str) -> list[int]:
        return self.tokens_to_ids(SPACE if c == " " else c for c in " ".join(text.split()))

    def decode(self, ids: Iterable[int]) -> str:
        chars = [self.token_list[i] for i in ids if i >= len(RESERVED)]
        return "".join(chars).replace(SPACE, " ").strip()

    @staticmethod
    def build_token_list(texts: Iterable[str]) -> list[str]:
        """All characters seen in ``texts`` (sorted, spaces as ``▁``) after the reserved symbols."""
        chars: set[str] = set()
        for t in texts:
            chars.update(SPACE if c == " " else c for c in " ".join(t.split()))
        return list(RESERVED) + sorted(chars - set(RESERVED))


class BPETokenizer(Tokenizer):
    """SentencePiece (BPE or unigram) model; the serialized model is kept in the checkpoint."""

    kind = "bpe"

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.model_proto = model_proto
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        # sentencepiece reserves <unk> (and optionally bos/eos); we map pieces after our own reserved ids
        self._units = [p for p in pieces if p not in ("<unk>", "<s>", "</s>", "<pad>")]
        super().__init__(list(RESERVED) + self._units)

    def encode(self, text: str) -> list[int]:
        return self.tokens_to_ids(self._sp.encode(" ".join(text.split()), out_type=str))

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [self.token_list[i] for i in ids if i >= len(RESERVED)]
        return self._sp.decode_pieces(pieces).strip()

    def state(self) -> dict:
        return {**super().state(), "model_proto": self.model_proto}

    @staticmethod
    def train(texts: Iterable[str], vocab_size: int, model_type: str = "bpe") -> bytes:
        """Train a SentencePiece model on ``texts`` and return its serialized proto."""
        import io

        import sentencepiece as spm

        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            # keep the corpus small-data friendly: no hard failure when vocab_size is a bit too large
            hard_vocab_limit=False,
            minloglevel=2,
        )
        return buf.getvalue()


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild the tokenizer saved by :meth:`Tokenizer.state`."""
    kind = state.get("kind")
    if kind == "char":
        return CharTokenizer(state["token_list"])
    if kind == "bpe":
        tok = BPETokenizer(bytes(state["model_proto"]))
        if list(tok.token_list) != list(state["token_list"]):
            raise ValueError("saved token list does not match the saved SentencePiece model")
        return tok
    if kind == "phoneme":
        from narspeech.text.phonemes import PhonemeTokenizer

        return PhonemeTokenizer(state["token_list"], state.get("language", "en-us"))
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char', 'bpe' or 'phoneme'")


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike) -> None:
    """Write the tokenizer as a directory: ``tokens.txt`` (one symbol per line) and, for BPE, ``bpe.model``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokens.txt").write_text("\n".join(tok.token_list) + "\n", encoding="utf-8")
    (path / "kind").write_text(tok.kind + "\n")
    if getattr(tok, "language", None):
        (path / "language").write_text(tok.language + "\n")
    if isinstance(tok, BPETokenizer):
        (path / "bpe.model").write_bytes(tok.model_proto)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer directory written by :func:`save_tokenizer`."""
    path = Path(path)
    if not (path / "tokens.txt").is_file():
        raise FileNotFoundError(f"{path}: not a tokenizer directory (no tokens.txt)")
    kind = (path / "kind").read_text().strip() if (path / "kind").exists() else "char"
    tokens = (path / "tokens.txt").read_text(encoding="utf-8").splitlines()
    if kind == "bpe":
        return tokenizer_from_state({"kind": "bpe", "token_list": tokens, "model_proto": (path / "bpe.model").read_bytes()})
    state = {"kind": kind, "token_list": tokens}
    if (path / "language").exists():
        state["language"] = (path / "language").read_text().strip()
    return tokenizer_from_state(state)
