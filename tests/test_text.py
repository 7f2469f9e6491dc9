"""Tokenizers: reserved ids, char and SentencePiece BPE round trips, saving/loading, the ``tokens`` CLI."""

from __future__ import annotations

import random

import pytest

from narspeech.text.tokenizer import (
    BLANK_ID,
    MASK_ID,
    RESERVED,
    SOS_EOS_ID,
    SPACE,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_state,
)

TEXTS = ["hello world", "the cat sat", "a quick brown fox"]


@pytest.fixture
def char_tok() -> CharTokenizer:
    return CharTokenizer(CharTokenizer.build_token_list(TEXTS))


def _sentences(n: int = 50, seed: int = 0) -> list[str]:
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "to", "a", "big", "red", "house", "and", "then", "slept"]
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(n)]


@pytest.fixture(scope="module")
def bpe_tok() -> BPETokenizer:
    return BPETokenizer(BPETokenizer.train(_sentences(), vocab_size=40))


def test_reserved_layout():
    assert RESERVED == ("<blank>", "<unk>", "<mask>", "<sos/eos>")
    assert (BLANK_ID, UNK_ID, MASK_ID, SOS_EOS_ID) == (0, 1, 2, 3)


def test_char_token_list_and_space(char_tok):
    assert char_tok.token_list[:4] == RESERVED
    assert SPACE in char_tok.token_list and " " not in char_tok.token_list
    units = char_tok.token_list[4:]
    assert list(units) == sorted(units) and len(set(units)) == len(units)
    assert set(units) == set("helowrdthcsaquickbrownfx") | {SPACE}


def test_char_round_trip_normalizes_spaces(char_tok):
    text = "  hello   world\tthe  cat "
    ids = char_tok.encode(text)
    assert char_tok.decode(ids) == "hello world the cat"
    # one ▁ per word boundary, none at the ends
    assert char_tok.ids_to_tokens(ids).count(SPACE) == 3
    assert char_tok.ids_to_tokens(ids)[0] == "h" and char_tok.ids_to_tokens(ids)[-1] == "t"
    assert char_tok.encode("") == []


def test_char_encode_never_produces_reserved_ids_for_known_chars(char_tok):
    for t in TEXTS:
        ids = char_tok.encode(t)
        assert len(ids) == len(t)
        assert all(i >= len(RESERVED) for i in ids)
        assert all(i < char_tok.vocab_size for i in ids)


def test_char_unknown_maps_to_unk(char_tok):
    ids = char_tok.encode("hez")  # 'z' was never seen
    assert ids[-1] == UNK_ID
    assert ids[:2] == char_tok.encode("he")
    # <unk> is reserved, so decode drops it
    assert char_tok.decode(ids) == "he"


def test_char_decode_drops_reserved_ids(char_tok):
    ids = char_tok.encode("cat")
    noisy = [BLANK_ID, ids[0], MASK_ID, ids[1], SOS_EOS_ID, UNK_ID, ids[2], BLANK_ID]
    assert char_tok.decode(noisy) == "cat"


def test_token_list_must_start_with_reserved():
    with pytest.raises(ValueError, match="reserved"):
        CharTokenizer(["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="reserved"):
        CharTokenizer(["<unk>", "<blank>", "<mask>", "<sos/eos>", "a"])  # wrong order
    with pytest.raises(ValueError, match="reserved"):
        CharTokenizer(list(RESERVED[:3]))
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer(list(RESERVED) + ["a", "a"])


def test_char_state_round_trip(char_tok):
    state = char_tok.state()
    assert state["kind"] == "char"
    tok2 = tokenizer_from_state(state)
    assert isinstance(tok2, CharTokenizer)
    assert tok2.token_list == char_tok.token_list
    assert tok2.encode("the quick fox") == char_tok.encode("the quick fox")
    with pytest.raises(ValueError, match="kind"):
        tokenizer_from_state({"kind": "words", "token_list": list(RESERVED)})


def test_char_save_load_round_trip(char_tok, tmp_path):
    save_tokenizer(char_tok, tmp_path / "tok")
    assert (tmp_path / "tok" / "tokens.txt").read_text(encoding="utf-8").splitlines() == list(char_tok.token_list)
    tok2 = load_tokenizer(tmp_path / "tok")
    assert isinstance(tok2, CharTokenizer)
    assert tok2.token_list == char_tok.token_list
    for t in TEXTS:
        assert tok2.decode(tok2.encode(t)) == t
    with pytest.raises(FileNotFoundError, match="tokens.txt"):
        load_tokenizer(tmp_path / "nothing")


def test_bpe_layout_and_round_trip(bpe_tok):
    assert bpe_tok.token_list[:4] == RESERVED
    assert "<unk>" not in bpe_tok.token_list[4:]
    # vocab of ~40 sentencepiece pieces, minus sentencepiece's own <unk>, plus our 4 reserved
    assert 20 <= bpe_tok.vocab_size <= 44
    for s in _sentences(20, seed=1) + ["  the   cat  sat  "]:
        ids = bpe_tok.encode(s)
        assert ids and all(len(RESERVED) <= i < bpe_tok.vocab_size for i in ids)
        assert bpe_tok.decode(ids) == " ".join(s.split())
    # BPE merges: fewer tokens than characters
    assert len(bpe_tok.encode("the cat sat on the mat")) < len("the cat sat on the mat")
    assert bpe_tok.decode([BLANK_ID] + bpe_tok.encode("the dog") + [SOS_EOS_ID, MASK_ID]) == "the dog"


def test_bpe_unknown_char_is_unk(bpe_tok):
    assert UNK_ID in bpe_tok.encode("the zzz")


def test_bpe_state_and_save_load_round_trip(bpe_tok, tmp_path):
    tok2 = tokenizer_from_state(bpe_tok.state())
    assert isinstance(tok2, BPETokenizer) and tok2.token_list == bpe_tok.token_list

    save_tokenizer(bpe_tok, tmp_path / "bpe")
    assert (tmp_path / "bpe" / "bpe.model").is_file()
    tok3 = load_tokenizer(tmp_path / "bpe")
    assert isinstance(tok3, BPETokenizer)
    assert tok3.token_list == bpe_tok.token_list
    for s in _sentences(10, seed=2):
        assert tok3.encode(s) == bpe_tok.encode(s)
        assert tok3.decode(tok3.encode(s)) == s

    # a token list that does not match the model is rejected
    bad = bpe_tok.state()
    bad["token_list"] = bad["token_list"][:-1]
    with pytest.raises(ValueError, match="does not match"):
        tokenizer_from_state(bad)


def _text_dir(root, texts):
    d = root / "data"
    d.mkdir()
    (d / "text").write_text("".join(f"u{i:03d} {t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    return d


def test_tokens_cli_char(tmp_path, capsys):
    from narspeech.bin import tokens

    d = _text_dir(tmp_path, TEXTS)
    assert tokens.main(["--data", str(d), "--out", str(tmp_path / "tok")]) == 0
    assert "char tokenizer" in capsys.readouterr().out
    tok = load_tokenizer(tmp_path / "tok")
    assert isinstance(tok, CharTokenizer)
    for t in TEXTS:
        ids = tok.encode(t)
        assert UNK_ID not in ids
        assert tok.decode(ids) == t


def test_tokens_cli_bpe(tmp_path):
    from narspeech.bin import tokens

    sents = _sentences()
    d = _text_dir(tmp_path, sents)
    out = tmp_path / "tok_bpe"
    assert tokens.main(["--data", str(d), "--out", str(out), "--kind", "bpe", "--vocab-size", "40"]) == 0
    tok = load_tokenizer(out)
    assert isinstance(tok, BPETokenizer)
    for s in sents[:10]:
        ids = tok.encode(s)
        assert UNK_ID not in ids
        assert tok.decode(ids) == s
