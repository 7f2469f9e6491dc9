"""English text normalisation for TTS: what a reader says for numbers, ordinals, currency, percentages and the common
abbreviations, with sentence punctuation kept (the TTS front end turns it into pause tokens).

The rules are those of Keith Ito's ``tacotron`` cleaners (the de-facto standard of LJ Speech recipes); numbers are
spelled by ``num2words``. Case is kept for the phonemizer (espeak-ng reads "US" and "us" differently).
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

# abbreviation (case-insensitive, followed by a period) -> expansion
ABBREVIATIONS = {
    "mrs": "misess", "mr": "mister", "dr": "doctor", "st": "saint", "co": "company", "jr": "junior",
    "maj": "major", "gen": "general", "drs": "doctors", "rev": "reverend", "lt": "lieutenant", "hon": "honorable",
    "sgt": "sergeant", "capt": "captain", "esq": "esquire", "ltd": "limited", "col": "colonel", "ft": "fort",
    "vs": "versus", "etc": "et cetera",
}  # fmt: skip
_ABBREV_RE = re.compile(r"\b(" + "|".join(sorted(ABBREVIATIONS, key=len, reverse=True)) + r")\.(?=\s|$)", re.I)
_NUMBER_ABBREV_RE = re.compile(r"\bno\.(?=\s*\d)", re.I)  # "No. 5" -> "number 5"; "no." elsewhere is the word
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents")}  # fmt: skip
_CURRENCY_RE = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_DECIMAL_RE = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER_RE = re.compile(r"\b\d+\b")
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})
YEAR_RANGE = (1100, 2099)  # four-digit integers read as years ("nineteen ninety-nine"), except round thousands


def _cardinal(n: str) -> str:
    return num2words(int(n))


def _number(m: re.Match) -> str:
    n = int(m.group(0))
    if YEAR_RANGE[0] <= n <= YEAR_RANGE[1] and len(m.group(0)) == 4 and n % 1000:
        return num2words(n, to="year")
    return num2words(n)


def _currency(m: re.Match) -> str:
    one, many, sub_one, sub_many = CURRENCIES[m.group(1)]
    whole = int(m.group(2).replace(",", ""))
    cents = int((m.group(3) or "0").ljust(2, "0"))
    parts = []
    if whole or not cents:
        parts.append(f"{num2words(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{num2words(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def normalize_english(text: str) -> str:
    """Spell out what is read aloud; keep words, case and punctuation; collapse whitespace.

    >>> normalize_english("Dr. Smith paid $3.50 on the 2nd of May, 1999 (12% off).")
    'doctor Smith paid three dollars and fifty cents on the second of May, nineteen ninety nine (twelve percent off).'
    """
    t = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    t = _NUMBER_ABBREV_RE.sub("number", t)
    t = _ABBREV_RE.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], t)
    t = _THOUSANDS_RE.sub("", t)
    t = _CURRENCY_RE.sub(_currency, t)
    t = _PERCENT_RE.sub(lambda m: f"{m.group(1)} percent", t)
    t = _ORDINAL_RE.sub(lambda m: num2words(int(m.group(1)), to="ordinal"), t)
    t = _DECIMAL_RE.sub(lambda m: f"{_cardinal(m.group(1))} point {' '.join(_cardinal(d) for d in m.group(2))}", t)
    t = _NUMBER_RE.sub(_number, t)
    # hyphens (num2words' "forty-two", "well-known") become spaces: the phonemizer reads both alike
    return " ".join(t.replace("-", " ").split()) if t.strip() else ""
