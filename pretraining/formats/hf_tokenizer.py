"""Hugging Face tokenizer files for an export: `tokenizer.json` (a fast
tokenizer that gives our ids), `tokenizer_config.json` and
`special_tokens_map.json`, so `AutoTokenizer.from_pretrained(dir)` and
`pipeline("fill-mask", model=dir)` work on what `convert` writes.

WordPiece (`data_pipeline/wordpiece.py`): Google's basic tokenization
(`BertNormalizer` + `BertPreTokenizer`: control and format characters
dropped, private-use ones kept, CJK characters split, lowercasing and accent
stripping by `do_lower_case`, punctuation split), then greedy
longest-match-first pieces with `##` continuations; a word of more than 200
characters is `[UNK]`.

SentencePiece (`data_pipeline/tokenization.py`), from the model's own spec:
its precompiled normalisation (NFKC for ours), leading, trailing and repeated
spaces removed, the `▁` dummy prefix, spaces escaped as `▁`; the Unigram
lattice (Viterbi over the piece scores) or BPE merges ranked by piece score;
consecutive unknown characters one `[UNK]`; byte fallback when the model has
it; user-defined pieces (tokens added with `--add_tokens`) matched whole.

Two differences, on purpose: `[MASK]` takes the space before it, so
`"the [MASK] is"` gives `▁the [MASK] ▁is`, the ids of a masked training input
(SentencePiece puts a `▁` piece before `[MASK]`; our WordPiece spells `[`,
`mask`, `]`); and `[CLS]`, `[SEP]`, `[PAD]`, `[UNK]` written in the text are
one special token in `transformers`, as in every BERT tokenizer there.

The file is written as JSON in the layout of the `tokenizers` package (0.20
and later; `transformers` installs it), without needing that package here:
a test checks that `tokenizers` reads it and writes back the same JSON.
"""

import base64
import json
import os
import re

from absl import logging

from pretraining.formats import vocab as vocab_lib

TOKENIZER_FILE = "tokenizer.json"
# Google's WordPiece (and ours) turns a longer word into [UNK].
MAX_INPUT_CHARS_PER_WORD = 200
_SPECIAL_NAMES = ("unk", "sep", "pad", "cls", "mask")
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED = 1, 2, 3, 4  # SentencePiece piece types
_UNIGRAM, _BPE = 1, 2  # SentencePiece model types


def special_tokens(vocab: vocab_lib.Vocabulary) -> dict:
    """`unk_token`, `sep_token`, ... -> token, for the names the vocabulary has:
    `[UNK]` `[SEP]` `[PAD]` `[CLS]` `[MASK]`, else (SentencePiece) the model's
    own unknown, eos, pad and bos pieces."""
    present = set(vocab.tokens)
    tokens = {f"{name}_token": f"[{name.upper()}]" for name in _SPECIAL_NAMES}
    if vocab.kind == vocab_lib.SENTENCEPIECE:
        proto = vocab_lib.sentencepiece_proto(vocab)
        spec = proto.trainer_spec
        unknown = [p.piece for p in proto.pieces if p.type == _UNKNOWN]
        fallback = {"unk_token": unknown[0] if unknown else spec.unk_piece,
                    "sep_token": spec.eos_piece, "pad_token": spec.pad_piece,
                    "cls_token": spec.bos_piece}
        tokens = {name: token if token in present else fallback.get(name, token)
                  for name, token in tokens.items()}
    return {name: token for name, token in tokens.items() if token in present}


def _regex(pattern: str) -> dict:
    return {"Regex": pattern}


def _replace(pattern: dict, content: str) -> dict:
    return {"type": "Replace", "pattern": pattern, "content": content}


def _post_processor(specials: dict, ids: dict) -> dict | None:
    """`[CLS] A [SEP]`, and `[CLS] A [SEP] B [SEP]` with type id 1 for B."""
    cls, sep = specials.get("cls_token"), specials.get("sep_token")
    if cls is None or sep is None:
        return None
    piece = lambda kind, name, type_id: {kind: {"id": name, "type_id": type_id}}
    single = [piece("SpecialToken", cls, 0), piece("Sequence", "A", 0),
              piece("SpecialToken", sep, 0)]
    return {"type": "TemplateProcessing", "single": single,
            "pair": single + [piece("Sequence", "B", 1), piece("SpecialToken", sep, 1)],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in (cls, sep)}}


def _wordpiece_ids(vocab: vocab_lib.Vocabulary) -> dict:
    """Token -> id as `data_pipeline.wordpiece.load_vocab` numbers them:
    blank lines and repeated tokens take no id."""
    ids = {}
    for token in vocab.tokens:
        token = token.strip()
        if token:
            ids.setdefault(token, len(ids))
    if len(ids) != len(vocab.tokens):
        logging.warning("%s has %d blank or repeated lines: they take no id (as in the data "
                        "pipeline), so later tokens' ids are not their line numbers.",
                        vocab.source, len(vocab.tokens) - len(ids))
    return ids


def _wordpiece(vocab: vocab_lib.Vocabulary) -> tuple[dict, dict, list]:
    ids = _wordpiece_ids(vocab)
    if "[UNK]" not in ids:
        raise ValueError(f"The WordPiece vocabulary {vocab.source} has no [UNK] token: add it "
                         "(one line) to export a Hugging Face tokenizer.")
    parts = {
        # Google's cleaning drops format/control characters (but tab, newline,
        # carriage return) and U+FFFD; BertNormalizer's `clean_text` would also
        # drop private-use and unassigned ones, which ours keep.
        "normalizer": {"type": "Sequence", "normalizers": [
            _replace(_regex(r"(?![\t\n\r])[\p{Cc}\p{Cf}\x{FFFD}]"), ""),
            {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": True,
             "strip_accents": None, "lowercase": bool(vocab.do_lower_case)}]},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": MAX_INPUT_CHARS_PER_WORD, "vocab": ids},
    }
    return parts, ids, []


def _bpe_merges(proto) -> list:
    """SentencePiece BPE joins the adjacent pair whose union is the piece of
    highest score: every split of a normal piece into two normal pieces is a
    merge, ranked by the union's score (then id)."""
    normal = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces)
              if p.type == _NORMAL}
    ranked = []
    for piece, (score, i) in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, i, left, right))
    return [[left, right] for _, _, left, right in sorted(ranked)]


def _sentencepiece(vocab: vocab_lib.Vocabulary) -> tuple[dict, dict, list]:
    proto = vocab_lib.sentencepiece_proto(vocab)
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    pieces = [p.piece for p in proto.pieces]
    ids = {piece: i for i, piece in enumerate(pieces)}
    unknown = [i for i, p in enumerate(proto.pieces) if p.type == _UNKNOWN]
    mask = special_tokens(vocab).get("mask_token")
    user_defined = [p.piece for p in proto.pieces if p.type == _USER_DEFINED and p.piece != mask]
    if spec.model_type == _UNIGRAM:
        model = {"type": "Unigram", "unk_id": unknown[0],
                 "vocab": [[p.piece, p.score] for p in proto.pieces],
                 "byte_fallback": spec.byte_fallback}
    elif spec.model_type == _BPE:
        model = {"type": "BPE", "dropout": None, "unk_token": pieces[unknown[0]],
                 "continuing_subword_prefix": None, "end_of_word_suffix": None,
                 "fuse_unk": True, "byte_fallback": spec.byte_fallback,
                 "ignore_merges": bool(user_defined), "vocab": ids,
                 "merges": _bpe_merges(proto)}
    else:
        raise ValueError(f"{vocab.source}: SentencePiece model_type {spec.model_type} "
                         "(word or char) has no Hugging Face export; train a unigram or bpe "
                         "model.")
    # Special tokens are cut out of the text first, so each step works on the
    # text between them: spaces are stripped at the end of the text only (the
    # mask token strips those before it), the dummy prefix goes before the
    # first piece of text only (a leading space becomes it).
    normalizers = []
    if norm.precompiled_charsmap:
        normalizers.append({"type": "Precompiled", "precompiled_charsmap": base64.b64encode(
            norm.precompiled_charsmap).decode("ascii")})
    if norm.remove_extra_whitespaces:
        normalizers += [_replace(_regex(r" +\z"), ""), _replace(_regex(" {2,}"), " ")]
    if norm.escape_whitespaces:
        normalizers.append(_replace({"String": " "}, "\u2581"))
    pre_tokenizers = [{"type": "Metaspace", "replacement": "\u2581", "split": False,
                       "prepend_scheme": "first" if norm.add_dummy_prefix else "never"}]
    if user_defined:
        # SentencePiece matches user-defined pieces whole, wherever they are.
        pattern = "|".join(re.escape(p) for p in sorted(user_defined, key=len, reverse=True))
        pre_tokenizers.append({"type": "Split", "pattern": _regex(pattern),
                               "behavior": "Isolated", "invert": False})
    if spec.model_type == _BPE:
        # No piece has a `▁` inside: BPE runs word by word (its cache works).
        pre_tokenizers.append({"type": "Split", "pattern": {"String": "\u2581"},
                               "behavior": "MergedWithNext", "invert": False})
    decoders = [_replace({"String": "\u2581"}, " ")]
    if spec.byte_fallback:
        decoders.append({"type": "ByteFallback"})
    decoders.append({"type": "Fuse"})
    if norm.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    parts = {"normalizer": {"type": "Sequence", "normalizers": normalizers},
             "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre_tokenizers},
             "decoder": {"type": "Sequence", "decoders": decoders},
             "model": model}
    control = [p.piece for p in proto.pieces if p.type in (_UNKNOWN, _CONTROL)]
    return parts, ids, control


def build(vocab: vocab_lib.Vocabulary) -> dict:
    """The `tokenizer.json` content of a fast tokenizer that encodes like our
    tokenizer of `vocab`, adding `[CLS] ... [SEP]` (and `[SEP]` after a second
    text, type id 1). `tokenizers.Tokenizer.from_str(json.dumps(...))` runs it.

    Raises:
        ValueError: a WordPiece vocabulary without `[UNK]`, a SentencePiece
            model of type word or char.
    """
    if vocab.kind == vocab_lib.SENTENCEPIECE:
        parts, ids, control = _sentencepiece(vocab)
    else:
        parts, ids, control = _wordpiece(vocab)
    specials = special_tokens(vocab)
    mask = specials.get("mask_token")
    # "the [MASK] is" -> ▁the [MASK] ▁is: the ids of a masked training input
    # (SentencePiece itself would put a `▁` piece before [MASK]).
    lstrip = vocab.kind == vocab_lib.SENTENCEPIECE
    added = sorted({ids[t] for t in [*specials.values(), *control]})
    names = {i: t for t, i in ids.items()}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": i, "content": names[i], "single_word": False,
                              "lstrip": lstrip and names[i] == mask, "rstrip": False,
                              "normalized": False, "special": True} for i in added],
            "normalizer": parts["normalizer"], "pre_tokenizer": parts["pre_tokenizer"],
            "post_processor": _post_processor(specials, ids), "decoder": parts["decoder"],
            "model": parts["model"]}


def tokenizer_config(vocab: vocab_lib.Vocabulary, model_max_length: int) -> dict:
    """`tokenizer_config.json`: `PreTrainedTokenizerFast` runs `tokenizer.json`
    as written (transformers 5's `BertTokenizer` would rebuild WordPiece from
    the vocabulary, with its own 100-character word limit)."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
              **special_tokens(vocab),
              "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}
    if vocab.kind == vocab_lib.WORDPIECE:
        config.update(do_lower_case=bool(vocab.do_lower_case))
    return config


def _write_json(path: str, data: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path


def write(vocab: vocab_lib.Vocabulary, directory: str, model_max_length: int = 512) -> list:
    """Writes `tokenizer.json`, `tokenizer_config.json` and
    `special_tokens_map.json` into `directory`.

    Args:
        vocab: `Vocabulary`. What the model was trained with (after surgery).
        directory: str. The Hugging Face export directory.
        model_max_length: int. Longest input, the model's
            `max_position_embeddings`. Defaults to 512.

    Returns:
        The paths written.
    """
    return [_write_json(os.path.join(directory, TOKENIZER_FILE), build(vocab)),
            _write_json(os.path.join(directory, "tokenizer_config.json"),
                        tokenizer_config(vocab, model_max_length)),
            _write_json(os.path.join(directory, "special_tokens_map.json"),
                        special_tokens(vocab))]
