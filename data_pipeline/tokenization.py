"""SentencePiece training and the tokenizer the pipeline encodes with.

Special ids are fixed: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
"""

import hashlib
import itertools
import os
import re
import shutil
import tempfile

import numpy as np
import sentencepiece as spm
from absl import logging
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from data_pipeline import features
from data_pipeline import vocab_layout

_WORD_PREFIX = "\u2581"  # "▁", SentencePiece's word-boundary marker.
MODEL_TYPES = ("unigram", "bpe")
# SentencePiece's default `max_sentence_length`, in bytes: it skips longer
# lines without a word, so they are counted here and reported.
MAX_SENTENCE_BYTES = 4192


def check_corpus(input_files: list[str],
                 max_sentence_length: int = MAX_SENTENCE_BYTES) -> int:
    """Checks tokenizer training input before SentencePiece sees it.

    Refuses a file that is not UTF-8 (naming it, the line and the byte) and
    a corpus with no text; logs a warning with the count of lines longer
    than `max_sentence_length` bytes, which SentencePiece skips.

    Args:
        input_files: list[str]. Corpus files.
        max_sentence_length: int. SentencePiece's limit, in bytes.

    Returns:
        The number of non-blank lines.

    Raises:
        ValueError: a file is not UTF-8, or no file holds a non-blank line.
    """
    lines = 0
    for path in input_files:
        long_lines = 0
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"Tokenizer input {path} is not UTF-8: line {number}, byte "
                        f"{e.start} of the line ({e.reason}). Convert it, e.g. "
                        f"`iconv -f latin1 -t utf-8`.") from None
                if text.strip():
                    lines += 1
                    if len(line.rstrip(b"\r\n")) > max_sentence_length:
                        long_lines += 1
        if long_lines:
            logging.warning(
                "%s: %d line(s) longer than SentencePiece's max_sentence_length=%d bytes "
                "are skipped in tokenizer training (split long lines into sentences).",
                path, long_lines, max_sentence_length)
    if not lines:
        raise ValueError(f"Tokenizer input {input_files} holds no text (every line is "
                         "blank): pass a non-empty corpus.")
    return lines


def _check_special_pieces(processor: spm.SentencePieceProcessor,
                          model_path: str) -> None:
    size = processor.get_piece_size()
    found = [processor.id_to_piece(i) for i in range(min(size, 5))]
    if tuple(found) != features.SPECIAL_TOKENS:
        raise ValueError(
            f"Tokenizer {model_path!r} must have pieces "
            f"{list(features.SPECIAL_TOKENS)} at ids 0-4. Received: {found}. "
            "Train it with `python -m data_pipeline.train_tokenizer`.")


def train_sentencepiece(input_files: list[str], vocab_size: int,
                        output_prefix: str, *, model_type: str = "unigram",
                        character_coverage: float = 0.9999,
                        input_sentence_size: int = 1_000_000,
                        seed: int = 0) -> str:
    """Trains a SentencePiece model with the pipeline's fixed special ids.

    Training is deterministic for the same inputs and seed (one thread; the
    sentence sample, when the corpus exceeds `input_sentence_size`, is drawn
    with `seed`). `PREFIX.model` and `PREFIX.vocab` appear atomically.

    Args:
        input_files: list[str]. Corpus files, one sentence per line (blank
            lines are ignored).
        vocab_size: int. Vocabulary size, special tokens included.
        output_prefix: str. Writes `output_prefix.model` and `.vocab`.
        model_type: str. "unigram" or "bpe". Defaults to "unigram".
        character_coverage: float. Fraction of characters covered; the rest
            map to [UNK]. Defaults to 0.9999.
        input_sentence_size: int. Maximum sentences sampled for training.
            Defaults to 1,000,000.
        seed: int. Seed of the sentence sample. Defaults to 0.

    Returns:
        The path of the `.model` file.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"`model_type` must be one of {list(MODEL_TYPES)}. "
                         f"Received: model_type={model_type!r}")
    if not isinstance(vocab_size, int) or vocab_size <= features.NUM_SPECIAL_IDS:
        raise ValueError(f"`vocab_size` must be an int > "
                         f"{features.NUM_SPECIAL_IDS}. Received: "
                         f"vocab_size={vocab_size!r}")
    if not input_files:
        raise ValueError("`input_files` is empty: pass at least one corpus file.")
    for path in input_files:
        if not os.path.isfile(path):
            raise ValueError(f"Tokenizer input file {path!r} does not exist.")
    if os.path.isdir(output_prefix):
        raise ValueError(f"--output={output_prefix!r} is a directory; it is a prefix: "
                         f"pass e.g. {os.path.join(output_prefix, 'spm')!r}.")
    check_corpus(input_files)
    out_dir = os.path.dirname(os.path.abspath(output_prefix))
    created = []  # directories made here, removed again if training fails
    parent = out_dir
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"--output={output_prefix!r}: {parent!r} is a file, not a "
                         "directory.")
    os.makedirs(out_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".spm-", dir=out_dir)
    done = False
    try:
        tmp_prefix = os.path.join(tmp_dir, "spm")
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                input=input_files, model_prefix=tmp_prefix,
                vocab_size=vocab_size, model_type=model_type,
                character_coverage=character_coverage,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                num_threads=1, minloglevel=2,
                pad_id=features.PAD_ID, pad_piece="[PAD]",
                unk_id=features.UNK_ID, unk_piece="[UNK]",
                bos_id=features.CLS_ID, bos_piece="[CLS]",
                eos_id=features.SEP_ID, eos_piece="[SEP]",
                user_defined_symbols=["[MASK]"])
        except RuntimeError as e:
            message = str(e)
            limit = re.search(r"<=\s*(\d+)", message)
            if "Vocabulary size too high" in message or "vocab_size" in message:
                hint = (f" Use --vocab_size={limit.group(1)} or smaller, or a "
                        "larger corpus." if limit else
                        " Use a smaller --vocab_size or a larger corpus.")
                raise ValueError(
                    f"--vocab_size={vocab_size} is too large for the corpus "
                    f"{input_files}.{hint} (sentencepiece: {message})") from e
            raise ValueError(f"SentencePiece training on {input_files} failed: "
                             f"{message}") from e
        model_path = output_prefix + ".model"
        _check_special_pieces(
            spm.SentencePieceProcessor(model_file=tmp_prefix + ".model"),
            model_path)
        # The model records its (random) temporary prefix; store the final
        # basename instead so the same inputs and seed give the same bytes.
        proto = model_pb2.ModelProto()
        with open(tmp_prefix + ".model", "rb") as f:
            proto.ParseFromString(f.read())
        proto.trainer_spec.model_prefix = os.path.basename(output_prefix)
        with open(tmp_prefix + ".model", "wb") as f:
            f.write(proto.SerializeToString(deterministic=True))
        os.replace(tmp_prefix + ".vocab", output_prefix + ".vocab")
        os.replace(tmp_prefix + ".model", model_path)
        done = True
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if not done:
            for directory in created:  # innermost first
                try:
                    os.rmdir(directory)
                except OSError:
                    break
    return model_path


class SentencePieceTokenizer:
    """Encodes text to ids with a SentencePiece model of the pipeline layout.

    Args:
        model_path: str. A `.model` file from `train_sentencepiece`.

    Attributes:
        vocab_size: int. Number of pieces.
        pad_id, unk_id, cls_id, sep_id, mask_id: int. Special ids (0-4).
        is_word_start: np.ndarray. bool `[vocab_size]`; True where a piece
            starts a word ("▁" prefix) or is a special/user-defined token.
        sha256: str. SHA-256 hex digest of the model file.

    Example:
        tok = SentencePieceTokenizer("spm.model")
        ids = tok.encode("Hello world.")
        starts = tok.word_starts(ids)
    """

    kind = "sentencepiece"
    options = {}
    pad_id = features.PAD_ID
    unk_id = features.UNK_ID
    cls_id = features.CLS_ID
    sep_id = features.SEP_ID
    mask_id = features.MASK_ID

    def __init__(self, model_path: str):
        if not os.path.isfile(model_path):
            raise ValueError(f"Tokenizer file {model_path!r} does not exist. "
                             "Train one with `python -m "
                             "data_pipeline.train_tokenizer`.")
        with open(model_path, "rb") as f:
            blob = f.read()
        processor = spm.SentencePieceProcessor()
        try:
            processor.load_from_serialized_proto(blob)
        except (RuntimeError, OSError, TypeError) as e:
            raise ValueError(f"Tokenizer file {model_path!r} is not a valid "
                             f"SentencePiece model: {e}") from e
        _check_special_pieces(processor, model_path)
        self.model_path = model_path
        self.sha256 = hashlib.sha256(blob).hexdigest()
        self._sp = processor
        self.vocab_size = processor.get_piece_size()
        proto = model_pb2.ModelProto()
        proto.ParseFromString(blob)
        normal = model_pb2.ModelProto.SentencePiece.NORMAL
        self.is_word_start = np.array(
            [p.type != normal or p.piece.startswith(_WORD_PREFIX)
             for p in proto.pieces], dtype=bool)
        self.layout = vocab_layout.VocabLayout(self.vocab_size,
                                               dict(features.SPECIAL_IDS))

    def encode(self, text: str) -> list[int]:
        """Returns the ids of `text` (no [CLS]/[SEP] added)."""
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Returns the ids of each text, using SentencePiece's batched encode
        on one thread (its default takes every core; a build gets its
        parallelism from worker processes instead)."""
        return self._sp.encode(list(texts), out_type=int, num_threads=1)

    def encode_flat(self, texts) -> tuple[np.ndarray, np.ndarray,
                                          np.ndarray]:
        """Encodes texts into one stream.

        Returns:
            (ids, starts, lengths): int32 `[T]` ids of all texts in order,
            bool `[T]` word-start flags, int64 `[len(texts)]` ids per text.
        """
        ids = self.encode_batch(texts)
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32,
                           int(lengths.sum()))
        return flat, self.is_word_start[flat], lengths

    def encode_with_starts(self, texts) -> tuple[list, list]:
        """Returns (ids per text, word-start flags per text)."""
        ids = self.encode_batch(texts)
        return ids, [self.is_word_start[np.asarray(i, np.int64)] for i in ids]

    def word_starts(self, ids) -> list[int]:
        """Returns 1 where the id starts a word (or is special), else 0."""
        return self.is_word_start[np.asarray(ids, dtype=np.int64)].astype(
            np.int32).tolist()

    def id_to_piece(self, token_id: int) -> str:
        """Returns the piece string of `token_id`."""
        return self._sp.id_to_piece(int(token_id))

    def decode(self, ids) -> str:
        """Returns the text of `ids` (special ids are dropped)."""
        return self._sp.decode([int(i) for i in ids])


def load_tokenizer(path: str, *, do_lower_case: bool | None = None,
                   strip_accents: bool | None = None, segmenter=None):
    """Opens a tokenizer by file kind: `.model` -> SentencePiece, any other
    file (a BERT `vocab.txt`) -> WordPiece.

    Args:
        path: str. Tokenizer file.
        do_lower_case, strip_accents, segmenter: WordPiece options (see
            `wordpiece.WordPieceTokenizer`; `do_lower_case=None` decides from
            the vocabulary); ignored for SentencePiece.

    Returns:
        A tokenizer with `kind`, `vocab_size`, `layout`, `sha256`, `options`,
        `encode_with_starts`, `id_to_piece` and `decode`.
    """
    if path.endswith(".model"):
        return SentencePieceTokenizer(path)
    from data_pipeline import wordpiece  # pylint: disable=import-outside-toplevel
    return wordpiece.WordPieceTokenizer(path, do_lower_case=do_lower_case,
                                        strip_accents=strip_accents,
                                        segmenter=segmenter)
