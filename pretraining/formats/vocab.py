"""Vocabularies beside a checkpoint: WordPiece `vocab.txt` or a SentencePiece
model; found, read, resized (vocabulary surgery) and written."""

import dataclasses
import glob
import json
import os
import shutil

WORDPIECE, SENTENCEPIECE = "wordpiece", "sentencepiece"
_SPM_NAMES = ("spiece.model", "sentencepiece.model", "sentencepiece.bpe.model", "spm.model")


@dataclasses.dataclass
class Vocabulary:
    """Tokens in id order.

    Args:
        tokens: list of str. Token (or piece) of each id.
        kind: str. `wordpiece` or `sentencepiece`.
        source: str. The file read.
        do_lower_case: bool or None. Whether the WordPiece tokenizer
            lowercases; None when unknown.
        resized: bool. True after surgery: a SentencePiece model is written
            again from `tokens` (`sentencepiece_proto`), not copied.
    """

    tokens: list
    kind: str
    source: str
    do_lower_case: bool | None = None
    resized: bool = False


def read(path: str, do_lower_case: bool | None = None) -> Vocabulary:
    """Reads a `vocab.txt` (one token a line) or a SentencePiece `.model`."""
    if not os.path.isfile(path):
        raise ValueError(f"Vocabulary file not found: {path}")
    if path.endswith(".model"):
        import sentencepiece
        processor = sentencepiece.SentencePieceProcessor(model_file=path)
        tokens = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        return Vocabulary(tokens, SENTENCEPIECE, path)
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n").rstrip("\r") for line in f]
    while tokens and tokens[-1] == "":
        tokens.pop()
    if do_lower_case is None:
        # Google's uncased vocabularies have no upper-case letters.
        do_lower_case = not any(any(c.isupper() for c in t) for t in tokens
                                if not (t.startswith("[") and t.endswith("]")))
    return Vocabulary(tokens, WORDPIECE, path, do_lower_case)


def find(directory: str) -> Vocabulary | None:
    """The vocabulary in a model directory (`vocab.txt`, else a SentencePiece
    model), with `do_lower_case` from a `tokenizer_config.json` when present."""
    if not directory or not os.path.isdir(directory):
        return None
    lower = None
    tokenizer_config = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(tokenizer_config):
        with open(tokenizer_config, encoding="utf-8") as f:
            lower = json.load(f).get("do_lower_case")
    if os.path.isfile(os.path.join(directory, "vocab.txt")):
        return read(os.path.join(directory, "vocab.txt"), lower)
    models = [os.path.join(directory, n) for n in _SPM_NAMES] + sorted(
        glob.glob(os.path.join(directory, "*.model")))
    for path in models:
        if os.path.isfile(path):
            return read(path)
    return None


def keep(vocab: Vocabulary | None, ids: list, old_size: int) -> Vocabulary | None:
    """The vocabulary of `ids` (old ids, in their new order)."""
    if vocab is None:
        return None
    if len(vocab.tokens) != old_size:
        raise ValueError(f"The vocabulary {vocab.source} has {len(vocab.tokens)} tokens but the "
                         f"model's vocab_size is {old_size}.")
    kept = dataclasses.replace(vocab, tokens=[vocab.tokens[i] for i in ids], resized=True)
    if kept.kind == SENTENCEPIECE:
        sentencepiece_proto(kept)  # refuses a model without its unknown piece, before writing
    return kept


def add(vocab: Vocabulary, tokens: list) -> Vocabulary:
    """`vocab` with `tokens` appended; a token already present is an error."""
    known = set(vocab.tokens)
    duplicates = [t for t in tokens if t in known]
    if duplicates or len(set(tokens)) != len(tokens):
        raise ValueError(f"--add_tokens: tokens already in the vocabulary {vocab.source} or "
                         f"repeated: {duplicates[:10] or sorted(tokens)[:10]}")
    return dataclasses.replace(vocab, tokens=vocab.tokens + list(tokens), resized=True)


def write_vocab_txt(vocab: Vocabulary, directory: str) -> str:
    """Writes `vocab.txt`: the tokens (or SentencePiece pieces) in id order."""
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in vocab.tokens)
    return path


def sentencepiece_proto(vocab: Vocabulary):
    """The SentencePiece `ModelProto` of `vocab`: the source model, or after
    surgery its pieces in the new order (scores, types and the normaliser
    kept) with added tokens as user-defined pieces, matched whole like
    `[MASK]`. ValueError when surgery dropped the unknown piece."""
    from sentencepiece import sentencepiece_model_pb2  # pylint: disable=import-outside-toplevel
    proto = sentencepiece_model_pb2.ModelProto()
    with open(vocab.source, "rb") as f:
        proto.ParseFromString(f.read())
    if not vocab.resized:
        return proto
    old = {p.piece: p for p in proto.pieces}
    unknown = [p.piece for p in proto.pieces if p.type == p.UNKNOWN]
    if unknown and unknown[0] not in vocab.tokens:
        index = [p.piece for p in proto.pieces].index(unknown[0])
        raise ValueError(f"--keep_tokens must keep the unknown piece {unknown[0]!r} (id {index}) "
                         f"of {vocab.source}: a SentencePiece model needs one. Add {index} to "
                         "the file.")
    pieces = []
    for token in vocab.tokens:
        piece = sentencepiece_model_pb2.ModelProto.SentencePiece()
        if token in old:
            piece.CopyFrom(old[token])
        else:
            piece.piece, piece.score, piece.type = token, 0.0, piece.USER_DEFINED
        pieces.append(piece)
    del proto.pieces[:]
    proto.pieces.extend(pieces)
    spec = proto.trainer_spec
    position = {token: i for i, token in enumerate(vocab.tokens)}
    spec.vocab_size = len(pieces)
    for name in ("unk", "bos", "eos", "pad"):
        setattr(spec, f"{name}_id", position.get(getattr(spec, f"{name}_piece"), -1))
    if unknown:
        spec.unk_id = position[unknown[0]]
    return proto


def copy_sentencepiece(vocab: Vocabulary, directory: str, name: str) -> str | None:
    """Writes the SentencePiece model as `name`: a copy of the source, or
    after surgery the model of the new pieces (`sentencepiece_proto`).
    None for a WordPiece vocabulary."""
    if vocab.kind != SENTENCEPIECE:
        return None
    path = os.path.join(directory, name)
    if vocab.resized:
        with open(path, "wb") as f:
            f.write(sentencepiece_proto(vocab).SerializeToString(deterministic=True))
    elif os.path.abspath(vocab.source) != os.path.abspath(path):
        shutil.copyfile(vocab.source, path)
    return path


def read_id_file(path: str) -> list:
    """`--keep_tokens`: one integer id per line (blank lines skipped)."""
    if not os.path.isfile(path):
        raise ValueError(f"--keep_tokens file not found: {path}")
    ids = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ids.append(int(line))
            except ValueError:
                raise ValueError(f"{path}:{number}: expected a token id, got {line.strip()!r}"
                                 ) from None
    return ids


def read_token_file(path: str) -> list:
    """`--add_tokens`: one token per line (blank lines skipped)."""
    if not os.path.isfile(path):
        raise ValueError(f"--add_tokens file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").rstrip("\r") for line in f if line.strip()]
