"""BERT WordPiece tokenization from an existing `vocab.txt` (Google's rules).

Basic tokenization as in Google's `tokenization.py`: clean control
characters, put spaces around CJK characters (one token per character),
optionally lower-case and strip accents, split off punctuation. Then greedy
longest-match-first WordPiece with `##` continuation pieces.

Casing: unless `do_lower_case` is given, it is read from a
`tokenizer_config.json` beside `vocab.txt`, else decided from the
vocabulary (a word piece with an upper-case letter → cased), and logged; the
first batch encoded warns when more than 5% of its tokens are `[UNK]`.

Word starts: a token starts a word unless it is a `##` piece. With a Chinese
`segmenter` (any callable str -> list of words, e.g. `jieba.lcut`), the
second and later characters of a multi-character CJK word are continuations,
so whole-word masking masks Chinese words as units.
"""

import hashlib
import json
import os
import re
import unicodedata
from typing import Callable

import numpy as np
from absl import logging

from data_pipeline import vocab_layout

REQUIRED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPECIAL = re.compile(r"^\[[^\]\s]+\]$")
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
               (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
               (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_MAX_CHARS_PER_WORD = 200
_CACHE_LIMIT = 200_000
UNK_WARNING_FRACTION = 0.05
# ASCII text: control characters (not tab/newline/CR) are dropped; a token is
# a run of letters/digits or one punctuation character (ASCII 33-47, 58-64,
# 91-96, 123-126); accents and CJK do not occur.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")


_CJK = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES) + "]")


def is_cjk(char: str) -> bool:
    """Whether `char` is a CJK Unified Ideograph (Google's definition)."""
    return _CJK.fullmatch(char) is not None


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def basic_tokenize(text: str, do_lower_case: bool = True,
                   strip_accents: bool | None = None) -> list[str]:
    """Google's BasicTokenizer: whitespace, punctuation and CJK splitting.

    Args:
        text: str. Raw text.
        do_lower_case: bool. Lower-case. Defaults to True.
        strip_accents: bool | None. Remove combining marks after NFD; None
            follows `do_lower_case`. Defaults to None.
    """
    if text.isascii():  # the same tokens, ~10x faster (no per-char Python)
        text = _ASCII_CONTROL.sub("", text)
        return _ASCII_TOKEN.findall(text.lower() if do_lower_case else text)
    if strip_accents is None:
        strip_accents = do_lower_case
    # Google's per-character rules as two str.translate tables (C loops over
    # per-character decisions cached on first sight): lower-casing and accent
    # stripping of the whole text equal the per-word ones, as the words are
    # whitespace-separated (final sigma included).
    text = text.translate(_FIRST_PASS)
    if do_lower_case:
        text = text.lower()
    if strip_accents:
        text = unicodedata.normalize("NFD", text).translate(_NONSPACING_MARKS)
    return text.translate(_PUNCTUATION).split()


class _FirstPass(dict):
    """Translate table: control characters, NUL and U+FFFD dropped,
    whitespace to a space, CJK ideographs padded with spaces."""

    def __missing__(self, cp: int):
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            value = None
        elif _is_whitespace(char):
            value = " "
        elif is_cjk(char):
            value = f" {char} "
        else:
            value = char
        self[cp] = value
        return value


class _Punctuation(dict):
    """Translate table: each punctuation character padded with spaces."""

    def __missing__(self, cp: int):
        char = chr(cp)
        value = f" {char} " if _is_punctuation(char) else char
        self[cp] = value
        return value


class _NonspacingMarks(dict):
    """Translate table: combining marks (category Mn) dropped."""

    def __missing__(self, cp: int):
        value = None if unicodedata.category(chr(cp)) == "Mn" else chr(cp)
        self[cp] = value
        return value


_FIRST_PASS = _FirstPass()
_PUNCTUATION = _Punctuation()
_NONSPACING_MARKS = _NonspacingMarks()


def load_vocab(vocab_file: str) -> dict[str, int]:
    """Reads a BERT `vocab.txt` (one token per line) into token -> id.

    Raises:
        ValueError: the file is missing, empty, or lacks a required token.
    """
    if not os.path.isfile(vocab_file):
        raise ValueError(f"Vocabulary file {vocab_file!r} does not exist. Pass "
                         "--tokenizer=PATH/vocab.txt (a BERT WordPiece vocab) "
                         "or a SentencePiece .model.")
    vocab = {}
    with open(vocab_file, encoding="utf-8") as f:
        for line in f:
            token = line.rstrip("\n").strip()
            if token and token not in vocab:
                vocab[token] = len(vocab)
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"Vocabulary {vocab_file!r} lacks the tokens "
                         f"{missing}; a BERT vocab.txt must contain "
                         f"{list(REQUIRED_TOKENS)}. Add them (one per line).")
    return vocab


def infer_do_lower_case(vocab_file: str, pieces) -> tuple[bool, str]:
    """Whether a WordPiece vocabulary is uncased, and why.

    `do_lower_case` of a `tokenizer_config.json` beside the file wins;
    otherwise a vocabulary with any upper-case word piece (special tokens
    such as `[CLS]` aside) is cased.

    Returns:
        (do_lower_case, the reason, for the log).
    """
    config = os.path.join(os.path.dirname(os.path.abspath(vocab_file)),
                          "tokenizer_config.json")
    if os.path.isfile(config):
        try:
            with open(config, encoding="utf-8") as f:
                value = json.load(f).get("do_lower_case")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, bool):
            return value, f"do_lower_case={value} in {config}"
    upper = [p for p in pieces if not _SPECIAL.match(p)
             and any(c.isupper() for c in p)]
    if upper:
        return False, (f"cased vocabulary: {len(upper)} word pieces with "
                       f"upper-case letters, e.g. {upper[:3]}")
    return True, "uncased vocabulary: no word piece has an upper-case letter"


class WordPieceTokenizer:
    """BERT WordPiece tokenizer over an existing `vocab.txt`.

    Args:
        vocab_file: str. One token per line; line number = id.
        do_lower_case: bool | None. Lower-case before WordPiece. None decides
            from a `tokenizer_config.json` beside the file, else from the
            vocabulary (upper-case pieces → cased), and logs the choice.
            Defaults to None.
        strip_accents: bool | None. None follows `do_lower_case`.
        segmenter: Callable[[str], list[str]] | None. Chinese word segmenter
            used for whole-word starts. Defaults to None (every CJK character
            is its own word).

    Example:
        tok = WordPieceTokenizer("vocab.txt")
        ids, starts = tok.encode_with_starts(["Hello, world!"])
    """

    kind = "wordpiece"

    def __init__(self, vocab_file: str, do_lower_case: bool | None = None,
                 strip_accents: bool | None = None,
                 segmenter: Callable[[str], list] | None = None):
        self.vocab = load_vocab(vocab_file)
        if do_lower_case is None:
            do_lower_case, why = infer_do_lower_case(vocab_file, self.vocab)
            logging.info("%s: do_lower_case=%s (%s; pass --do_lower_case or "
                         "--nodo_lower_case to choose).", vocab_file,
                         do_lower_case, why)
        self.model_path = vocab_file
        with open(vocab_file, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.segmenter = segmenter
        self.options = {"do_lower_case": do_lower_case,
                        "strip_accents": strip_accents,
                        "segmenter": getattr(segmenter, "__name__", None)
                        if segmenter else None}
        self.vocab_size = len(self.vocab)
        self.pieces = list(self.vocab)
        self.is_word_start = np.array([not p.startswith("##")
                                       for p in self.pieces])
        special = {name: self.vocab[token] for name, token in
                   zip(vocab_layout.SPECIAL_NAMES, REQUIRED_TOKENS)}
        self.layout = vocab_layout.VocabLayout.from_special_mask(
            [bool(_SPECIAL.match(p)) for p in self.pieces], special)
        self.unk_id = special["unk"]
        self._cache = {}
        self._unk_checked = False

    def _wordpiece(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        if len(word) > _MAX_CHARS_PER_WORD:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if not start else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                ids = [self.unk_id]
                break
            start = end
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Returns the WordPiece strings of `text`."""
        ids, _ = self._encode_one(text)
        return [self.pieces[i] for i in ids]

    def _words(self, text: str) -> list[str]:
        if self.segmenter is None:
            return [text]
        words = [str(w) for w in self.segmenter(text)]
        if "".join("".join(words).split()) != "".join(text.split()):
            raise ValueError(
                f"Chinese segmenter {self.options['segmenter']!r} changed the "
                f"text: {text[:40]!r} -> {words[:10]!r}. A segmenter must "
                "return words that concatenate to its input.")
        return words

    def _encode_one(self, text: str) -> tuple[list[int], list[int]]:
        ids, starts = [], []
        for word in self._words(text):
            previous_cjk = False
            for token in basic_tokenize(word, self.do_lower_case,
                                        self.strip_accents):
                cjk = len(token) == 1 and is_cjk(token)
                pieces = self._wordpiece(token)
                ids.extend(pieces)
                joined = cjk and previous_cjk and self.segmenter is not None
                starts.append(0 if joined else 1)
                starts.extend([0] * (len(pieces) - 1))
                previous_cjk = cjk
        return ids, starts

    def encode(self, text: str) -> list[int]:
        """Returns the ids of `text` (no [CLS]/[SEP] added)."""
        return self._encode_one(text)[0]

    def encode_with_starts(self, texts) -> tuple[list, list]:
        """Returns (ids per text, word-start flags per text)."""
        out = [self._encode_one(t) for t in texts]
        ids = [o[0] for o in out]
        if not self._unk_checked:
            self._check_unknown(ids)
        return ids, [o[1] for o in out]

    def _check_unknown(self, ids: list) -> None:
        """Warns once when the first batch is more than 5% `[UNK]` (a cased
        vocabulary read with lower-casing, or the wrong vocabulary)."""
        total = sum(len(i) for i in ids)
        if not total:
            return
        self._unk_checked = True
        unknown = sum(t == self.unk_id for i in ids for t in i)
        if unknown > UNK_WARNING_FRACTION * total:
            logging.warning(
                "%.1f%% of the tokens of the first batch are [UNK] (%d of %d) "
                "with %s, do_lower_case=%s: check the vocabulary and "
                "--do_lower_case.", 100 * unknown / total, unknown, total,
                self.model_path, self.do_lower_case)

    def id_to_piece(self, token_id: int) -> str:
        """Returns the vocabulary string of `token_id`."""
        return self.pieces[int(token_id)]

    def decode(self, ids) -> str:
        """Joins pieces into text (`##` pieces glued to the previous one)."""
        text = " ".join(self.pieces[int(i)] for i in ids)
        return text.replace(" ##", "")
