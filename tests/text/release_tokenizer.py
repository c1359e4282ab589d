"""The release's tokenisation, written out from its rules for the tests (no tokenizer library).

The release tokenises with its copy of ALBEF's ``BertTokenizer`` (``models/tokenization_bert.py``)
built from the encoder folder's ``vocab.txt`` with its defaults (``do_lower_case=True``,
``tokenize_chinese_chars=True``, accents stripped when lower-casing, ``[UNK]`` for words over 100
characters or with no word-piece split), called as ``tokenizer(texts, padding='max_length',
truncation=True, max_length=N)``; its ``build_inputs_with_special_tokens`` returns ``[CLS] X``
for one text: no ``[SEP]``. This module follows those rules step by step (BERT's basic
tokenizer, then greedy longest-match word pieces), so that the tests compare medklip's
tokenisation with the rule, not with the library medklip itself calls.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

MAX_WORD_CHARS = 100


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                             (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokens(text: str) -> list[str]:
    """BERT's basic tokenizer with the release's defaults (lower case, accents stripped)."""
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_cjk(cp):
            cleaned.append(f" {ch} ")
        else:
            cleaned.append(" " if _is_whitespace(ch) else ch)
    out: list[str] = []
    for token in "".join(cleaned).split():
        token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for ch in token:
            if _is_punctuation(ch):
                if current:
                    out.append(current)
                out.append(ch)
                current = ""
            else:
                current += ch
        if current:
            out.append(current)
    return out


def word_pieces(word: str, vocab: dict[str, int]) -> list[str]:
    """Greedy longest-match-first word pieces of one word (``[UNK]`` when it does not split)."""
    if len(word) > MAX_WORD_CHARS:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def read_vocab(path: Path) -> dict[str, int]:
    return {line.rstrip("\n"): i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())}


def release_ids(text: str, vocab: dict[str, int], max_length: int) -> tuple[list[int], list[int]]:
    """``(input_ids, attention_mask)`` of one text as the release feeds its encoder."""
    pieces = [p for word in basic_tokens(text) for p in word_pieces(word, vocab)]
    ids = [vocab["[CLS]"], *[vocab[p] for p in pieces]][:max_length]
    mask = [1] * len(ids)
    pad = max_length - len(ids)
    return ids + [vocab["[PAD]"]] * pad, mask + [0] * pad
