"""Hugging Face tokenizer files for an export: `tokenizer.json` (a fast
tokenizer that gives our ids), `tokenizer_config.json` and
`special_tokens_map.json`, so `AutoTokenizer.from_pretrained(dir)` and
`pipeline("fill-mask", model=dir)` work on what `convert` writes.

WordPiece (`data_pipeline/wordpiece.py`): Google's basic tokenization
(`BertNormalizer` + `BertPreTokenizer`: control and format characters
dropped, private-use ones kept, CJK characters split, lowercasing and accent
stripping by `do_lower_case`, punctuation split), then greedy longest-match-first pieces with `##`
continuations; a word of more than 200 characters is `[UNK]`.

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

Needs the `tokenizers` package (installed with `transformers`) at export
time: without it a SentencePiece export is refused (transformers would read
the directory as a 5-token BertTokenizer), and a WordPiece export writes
`vocab.txt` + `tokenizer_config.json`, from which transformers builds the same
tokenizer (words of 101-200 characters and private-use characters excepted),
with a warning.
"""

import json
import os
import re

from absl import logging

from pretraining.formats import vocab as vocab_lib

TOKENIZER_FILE = "tokenizer.json"
INSTALL = "pip install tokenizers"
# Google's WordPiece (and ours) turns a longer word into [UNK].
MAX_INPUT_CHARS_PER_WORD = 200
_SPECIAL_NAMES = ("unk", "sep", "pad", "cls", "mask")
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED = 1, 2, 3, 4  # SentencePiece piece types


def available() -> bool:
    """Whether the `tokenizers` package can be imported."""
    try:
        import tokenizers  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return False
    return True


def check(vocab: vocab_lib.Vocabulary | None) -> None:
    """Refuses a SentencePiece export without `tokenizers`, before anything
    is written."""
    if vocab is not None and vocab.kind == vocab_lib.SENTENCEPIECE and not available():
        raise ValueError(f"A Hugging Face export of the SentencePiece model {vocab.source} "
                         f"needs the `tokenizers` package to write {TOKENIZER_FILE}: "
                         f"`{INSTALL}` (or `pip install transformers`), then export again.")


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


def _post_processor(specials: dict, ids: dict):
    from tokenizers import processors  # pylint: disable=import-outside-toplevel
    cls, sep = specials.get("cls_token"), specials.get("sep_token")
    if cls is None or sep is None:
        return None
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])])


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


def _wordpiece(vocab: vocab_lib.Vocabulary):
    # pylint: disable-next=import-outside-toplevel
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    ids = _wordpiece_ids(vocab)
    if "[UNK]" not in ids:
        raise ValueError(f"The WordPiece vocabulary {vocab.source} has no [UNK] token: add it "
                         "(one line) to export a Hugging Face tokenizer.")
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", continuing_subword_prefix="##",
                                           max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    # Google's cleaning drops format/control characters (but tab, newline,
    # carriage return) and U+FFFD; BertNormalizer's `clean_text` also drops
    # private-use and unassigned ones, which ours keep.
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(r"(?![\t\n\r])[\p{Cc}\p{Cf}\x{FFFD}]"), ""),
        normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True,
                                   strip_accents=None, lowercase=bool(vocab.do_lower_case))])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer, ids, ()


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
    return [(left, right) for _, _, left, right in sorted(ranked)]


def _sentencepiece(vocab: vocab_lib.Vocabulary):
    # pylint: disable-next=import-outside-toplevel
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    proto = vocab_lib.sentencepiece_proto(vocab)
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    pieces = [p.piece for p in proto.pieces]
    ids = {piece: i for i, piece in enumerate(pieces)}
    unknown = [i for i, p in enumerate(proto.pieces) if p.type == _UNKNOWN]
    mask = special_tokens(vocab).get("mask_token")
    user_defined = [p.piece for p in proto.pieces if p.type == _USER_DEFINED and p.piece != mask]
    if spec.model_type == 1:  # UNIGRAM
        model = models.Unigram([(p.piece, p.score) for p in proto.pieces], unknown[0],
                               byte_fallback=spec.byte_fallback)
    elif spec.model_type == 2:  # BPE
        model = models.BPE(ids, _bpe_merges(proto), unk_token=pieces[unknown[0]],
                           fuse_unk=True, byte_fallback=spec.byte_fallback,
                           ignore_merges=bool(user_defined))
    else:
        raise ValueError(f"{vocab.source}: SentencePiece model_type {spec.model_type} "
                         "(word or char) has no Hugging Face export; train a unigram or bpe "
                         "model.")
    tokenizer = Tokenizer(model)
    # Special tokens are cut out of the text first, so each step works on the
    # text between them: spaces are stripped at the end of the text only (the
    # mask token strips those before it), the dummy prefix goes before the
    # first piece of text only (a leading space becomes it).
    steps = [normalizers.Precompiled(norm.precompiled_charsmap)] if norm.precompiled_charsmap \
        else []
    if norm.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r" +\z"), ""),
                  normalizers.Replace(Regex(" {2,}"), " ")]
    if norm.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "\u2581"))
    tokenizer.normalizer = normalizers.Sequence(steps)
    steps = [pre_tokenizers.Metaspace(replacement="\u2581", split=False,
                                      prepend_scheme="first" if norm.add_dummy_prefix else "never")]
    if user_defined:
        # SentencePiece matches user-defined pieces whole, wherever they are.
        pattern = "|".join(re.escape(p) for p in sorted(user_defined, key=len, reverse=True))
        steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
    if spec.model_type == 2:
        # No piece has a `▁` inside: BPE runs word by word (its cache works).
        steps.append(pre_tokenizers.Split("\u2581", behavior="merged_with_next"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    steps = [decoders.Replace("\u2581", " ")]
    if spec.byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    if norm.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(steps)
    control = [p.piece for p in proto.pieces if p.type in (_UNKNOWN, _CONTROL)]
    return tokenizer, ids, control


def build(vocab: vocab_lib.Vocabulary):
    """A `tokenizers.Tokenizer` that encodes like our tokenizer of `vocab`,
    adding `[CLS] ... [SEP]` (and `[SEP]` after a second text, type id 1).

    Raises:
        ValueError: no `tokenizers` package, a WordPiece vocabulary without
            `[UNK]`, a SentencePiece model of type word or char.
    """
    if not available():
        raise ValueError(f"Writing {TOKENIZER_FILE} needs the `tokenizers` package: "
                         f"`{INSTALL}`.")
    from tokenizers import AddedToken  # pylint: disable=import-outside-toplevel
    if vocab.kind == vocab_lib.SENTENCEPIECE:
        tokenizer, ids, control = _sentencepiece(vocab)
    else:
        tokenizer, ids, control = _wordpiece(vocab)
    specials = special_tokens(vocab)
    mask = specials.get("mask_token")
    # "the [MASK] is" -> ▁the [MASK] ▁is: the ids of a masked training input
    # (SentencePiece itself would put a `▁` piece before [MASK]).
    lstrip = vocab.kind == vocab_lib.SENTENCEPIECE
    tokens = list(dict.fromkeys([*specials.values(), *control]))
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False,
                                             lstrip=lstrip and t == mask) for t in tokens])
    processor = _post_processor(specials, ids)
    if processor is not None:
        tokenizer.post_processor = processor
    return tokenizer


def tokenizer_config(vocab: vocab_lib.Vocabulary, model_max_length: int,
                     fast: bool = True) -> dict:
    """`tokenizer_config.json`. With `tokenizer.json` (`fast`) the class is
    `PreTrainedTokenizerFast`, which runs that file as written (transformers
    5's `BertTokenizer` rebuilds WordPiece from the vocabulary with its own
    100-character word limit); without it, `BertTokenizer` from `vocab.txt`."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast" if fast else "BertTokenizer",
              "model_max_length": model_max_length, **special_tokens(vocab),
              "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}
    if vocab.kind == vocab_lib.WORDPIECE:
        config.update(do_lower_case=bool(vocab.do_lower_case), tokenize_chinese_chars=True,
                      strip_accents=None)
    return config


def _write_json(path: str, data: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path


def write(vocab: vocab_lib.Vocabulary, directory: str, model_max_length: int = 512) -> list:
    """Writes `tokenizer.json` (when `tokenizers` is installed),
    `tokenizer_config.json` and `special_tokens_map.json` into `directory`.

    Args:
        vocab: `Vocabulary`. What the model was trained with (after surgery).
        directory: str. The Hugging Face export directory.
        model_max_length: int. Longest input, the model's
            `max_position_embeddings`. Defaults to 512.

    Returns:
        The paths written.
    """
    check(vocab)
    written = []
    if available():
        path = os.path.join(directory, TOKENIZER_FILE)
        build(vocab).save(path)
        written.append(path)
    else:
        logging.warning("%s not written (no `tokenizers` package: `%s`); transformers builds "
                        "the WordPiece tokenizer from vocab.txt and tokenizer_config.json.",
                        TOKENIZER_FILE, INSTALL)
    written.append(_write_json(os.path.join(directory, "tokenizer_config.json"),
                               tokenizer_config(vocab, model_max_length, fast=bool(written))))
    written.append(_write_json(os.path.join(directory, "special_tokens_map.json"),
                               special_tokens(vocab)))
    return written

