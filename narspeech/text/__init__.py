"""Text: tokenizers with shared reserved ids, and normalizers."""

from narspeech.text.tokenizer import (
    BLANK_ID,
    MASK_ID,
    RESERVED,
    SOS_EOS_ID,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_state,
)

__all__ = [
    "BLANK_ID", "MASK_ID", "RESERVED", "SOS_EOS_ID", "UNK_ID", "BPETokenizer", "CharTokenizer", "Tokenizer",
    "load_tokenizer", "save_tokenizer", "tokenizer_from_state",
]
