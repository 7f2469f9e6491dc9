"""The text-to-text task shared by error correction (``text.hyp`` -> ``text``) and translation (``text.src`` ->
``text``): token ids from one tokenizer (a joint one, as MT uses) or one per side, batches capped in tokens, and the
word error rate of the model's inference as the validation metric."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from narspeech.base import Model
from narspeech.data.kaldi import DataDirError
from narspeech.data.text import TextPair, read_text_dir
from narspeech.metrics import word_error_rate
from narspeech.registry import TASKS
from narspeech.tasks.base import Task, TaskDataset
from narspeech.text.tokenizer import Tokenizer, load_tokenizer, tokenizer_from_state

IGNORE_ID = -1  # padding of source and target id sequences


@dataclass
class Text2TextDataConfig:
    train: list[str] = field(default_factory=list)  # text-to-text data dirs (text + the source file)
    valid: list[str] = field(default_factory=list)
    source: str = "text.src"  # the source file of each dir: text.src (translation) or text.hyp (correction)
    tokenizer: str = ""  # tokenizer dir (`narspeech tokens`) of the targets, and of the sources unless src_tokenizer
    src_tokenizer: str = ""  # a separate source tokenizer dir ("" = the same as tokenizer)
    max_tokens: int = 4000  # tokens per batch, padding included (the longer side of each pair counts)
    max_len: int = 256  # training pairs with a longer side are skipped (and reported)
    num_workers: int = 0


class Text2TextModel(Model):
    """Token ids -> token ids. ``batch`` holds ``src`` (B, S) and ``tokens`` (B, L), padded with -1, and their
    lengths ``src_lens`` / ``token_lens`` (B,)."""

    @abc.abstractmethod
    def infer(self, src: torch.Tensor, src_lens: torch.Tensor) -> list[list[int]]:
        """Decode a batch: ``src`` (B, S) padded with -1, ``src_lens`` (B,) -> target token ids per item."""


@dataclass(frozen=True)
class TextExample:
    key: str
    src: torch.Tensor  # (S,) int64
    tgt: torch.Tensor  # (L,) int64


class Text2TextDataset(TaskDataset):
    """Encoded pairs; ``lengths`` are the longer side's token counts (the padding a batch pays)."""

    def __init__(self, pairs: Sequence[TextPair], src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: int = 0) -> None:
        self.examples: list[TextExample] = []
        self.problems: list[tuple[str, str]] = []
        for p in pairs:
            src, tgt = src_tok.encode(p.source), tgt_tok.encode(p.target)
            if max_len and max(len(src), len(tgt)) > max_len:
                self.problems.append((p.key, f"{max(len(src), len(tgt))} tokens, longer than data.max_len={max_len}"))
                continue
            self.examples.append(TextExample(p.key, torch.tensor(src, dtype=torch.long),
                                             torch.tensor(tgt, dtype=torch.long)))

    @property
    def lengths(self) -> list[int]:
        return [max(1, e.src.numel(), e.tgt.numel()) for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> TextExample:
        return self.examples[i]


def collate_text(examples: Sequence[TextExample | None]) -> dict | None:
    """``src`` (B, S) and ``tokens`` (B, L) padded with -1, their lengths, and the keys as ``utt_ids``."""
    examples = [e for e in examples if e is not None]
    if not examples:
        return None

    def pad(seqs: list[torch.Tensor]) -> torch.Tensor:
        if all(s.numel() == 0 for s in seqs):
            return torch.full((len(seqs), 0), IGNORE_ID, dtype=torch.long)
        return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=IGNORE_ID)

    return {
        "utt_ids": [e.key for e in examples],
        "src": pad([e.src for e in examples]),
        "src_lens": torch.tensor([e.src.numel() for e in examples], dtype=torch.long),
        "tokens": pad([e.tgt for e in examples]),
        "token_lens": torch.tensor([e.tgt.numel() for e in examples], dtype=torch.long),
    }


@TASKS.register("text2text")
class Text2TextTask(Task):
    """Source text -> target text; the metric is the WER of the model's inference against the targets."""

    DataConfig = Text2TextDataConfig
    default_model = "ctc_nat"
    metric = "valid_wer"
    batch_unit = "tokens"
    item_noun = "sentences"

    def __init__(self, data: Text2TextDataConfig, tokenizer: Tokenizer, src_tokenizer: Tokenizer) -> None:
        super().__init__(data)
        self.tokenizer = tokenizer
        self.src_tokenizer = src_tokenizer

    @classmethod
    def create(cls, data: Text2TextDataConfig) -> "Text2TextTask":
        tok = load_tokenizer(data.tokenizer)
        return cls(data, tok, load_tokenizer(data.src_tokenizer) if data.src_tokenizer else tok)

    @classmethod
    def from_state(cls, data: Text2TextDataConfig, state: dict) -> "Text2TextTask":
        tok = tokenizer_from_state(state["tokenizer"])
        src = tokenizer_from_state(state["src_tokenizer"]) if state.get("src_tokenizer") else tok
        return cls(data, tok, src)

    def state(self) -> dict:
        st = {"tokenizer": self.tokenizer.state()}
        if self.src_tokenizer is not self.tokenizer:
            st["src_tokenizer"] = self.src_tokenizer.state()
        return st

    def model_args(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size, "src_vocab_size": self.src_tokenizer.vocab_size}

    @property
    def max_batch(self) -> int:
        return self.data.max_tokens

    def dataset(self, dirs: Sequence[str], train: bool, seed: int) -> Text2TextDataset:
        pairs = [p for d in dirs for p in read_text_dir(d, self.data.source)]
        if not pairs:
            raise DataDirError(f"no pairs in {' '.join(dirs)}")
        return Text2TextDataset(pairs, self.src_tokenizer, self.tokenizer, self.data.max_len if train else 0)

    def collate(self, items: Sequence[Any]) -> dict | None:
        return collate_text(items)

    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        if not isinstance(model, Text2TextModel):
            return {}
        refs, hyps = [], []
        for batch in batches:
            hyps += [self.tokenizer.decode(h) for h in model.infer(batch["src"], batch["src_lens"])]
            refs += [self.tokenizer.decode(t[t >= 0].tolist()) for t in batch["tokens"].cpu()]
        return {"valid_wer": word_error_rate(refs, hyps).rate} if refs else {}
