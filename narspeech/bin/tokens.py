"""``narspeech tokens --data DIR [DIR...] --out TOKDIR --kind char|bpe|phoneme [--vocab-size N] [--language L]``"""

from __future__ import annotations

import argparse


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech tokens", description="build a tokenizer from the text of data dirs")
    p.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs whose 'text' is used")
    p.add_argument("--files", nargs="+", default=["text"],
                   help="files of each data dir whose text is used, e.g. 'text text.src' for a joint MT tokenizer")
    p.add_argument("--out", required=True, help="output tokenizer directory")
    p.add_argument("--kind", choices=["char", "bpe", "phoneme"], default="char",
                   help="characters, SentencePiece pieces, or espeak-ng phones of the normalised text (TTS)")
    p.add_argument("--language", default="en-us", help="espeak-ng language of the phonemes (phoneme)")
    p.add_argument("--vocab-size", type=int, default=100, help="SentencePiece vocabulary size (bpe)")
    p.add_argument("--model-type", choices=["bpe", "unigram"], default="bpe")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from pathlib import Path

    from narspeech.data.kaldi import read_kv
    from narspeech.text.tokenizer import BPETokenizer, CharTokenizer, save_tokenizer

    texts = [t for d in args.data for name in args.files
             for t in read_kv(Path(d) / name, allow_empty_value=True).values()]
    if args.kind == "char":
        tok = CharTokenizer(CharTokenizer.build_token_list(texts))
    elif args.kind == "phoneme":
        from narspeech.text.phonemes import PhonemeTokenizer, PhonemizerError

        try:
            tok = PhonemeTokenizer(PhonemeTokenizer.build_token_list(texts, args.language), args.language)
        except PhonemizerError as e:
            print(f"narspeech tokens: error: {e}")
            return 1
    else:
        tok = BPETokenizer(BPETokenizer.train(texts, args.vocab_size, args.model_type))
    save_tokenizer(tok, args.out)
    print(f"{args.out}: {tok.kind} tokenizer, {tok.vocab_size} tokens (4 reserved)")
    return 0
