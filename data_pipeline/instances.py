"""Training sequences of one split of a work unit, as one padded batch.

Every task's packer returns a `PackedBatch`, which the records of every task
are made from (masked first for static masking):

  mlm      `pack_documents`: consecutive sentences of one document (never
           across documents) fill `[CLS] tokens [SEP]` sequences; a sentence
           longer than the remaining space continues in the next sequence
  mlm NSP, seq2seq   pairs from `nsp`, stacked by `stack`
  lm       `pack_stream`: documents joined with [SEP], cut every L tokens
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PackedBatch:
    """N sequences, zero padded to L.

    Args:
        tokens: np.ndarray. int32 `[N, L]`, token ids.
        word_starts: np.ndarray. bool `[N, L]`; True where a token starts a
            word ([CLS], [SEP] and a segment's first token always do).
        segment_ids: np.ndarray. int32 `[N, L]`, 0 (first segment) or 1.
        lengths: np.ndarray. int64 `[N]`, tokens in use per row.
        next_sentence_labels: np.ndarray | None. int64 `[N]`, 1 where the
            second segment is random (NSP); None without NSP. Defaults to
            None.
    """

    tokens: np.ndarray
    word_starts: np.ndarray
    segment_ids: np.ndarray
    lengths: np.ndarray
    next_sentence_labels: np.ndarray | None = None


def pack_spans(num_tokens: int, rng: np.random.Generator, *,
               max_seq_length: int,
               short_seq_prob: float = 0.1) -> list[tuple[int, int]]:
    """The (start, size) token spans a document of `num_tokens` tokens is
    packed into.

    Each span's target size is L - 2, or with `short_seq_prob` uniform in
    [2, L - 2] (one `rng.random()`, then one `rng.integers`); the last span
    takes what is left.

    Args:
        num_tokens: int. Tokens of the document.
        rng: np.random.Generator. Draws the short-sequence choices.
        max_seq_length: int. L.
        short_seq_prob: float. Probability of a shorter target size.
            Defaults to 0.1.
    """
    max_tokens = max_seq_length - 2
    spans = []
    pos = 0
    while pos < num_tokens:
        target = max_tokens
        if max_tokens > 2 and rng.random() < short_seq_prob:
            target = int(rng.integers(2, max_tokens + 1))
        spans.append((pos, min(target, num_tokens - pos)))
        pos += target
    return spans


def pack_documents(ids: np.ndarray, starts: np.ndarray, doc_ranges: list,
                   rng: np.random.Generator, *, max_seq_length: int,
                   short_seq_prob: float, cls_id: int, sep_id: int,
                   dupe_factor: int = 1) -> PackedBatch:
    """`[CLS] span [SEP]` sequences of documents at token ranges of a stream.

    Args:
        ids: np.ndarray. int32 `[T]`, the token stream.
        starts: np.ndarray. bool `[T]`, word starts of `ids`.
        doc_ranges: list. (first, end) token range of each document.
        rng: np.random.Generator. Draws the spans (`pack_spans`), document
            after document, `dupe_factor` times over.
        max_seq_length: int. L.
        short_seq_prob: float. As `pack_spans`.
        cls_id: int. Id of [CLS].
        sep_id: int. Id of [SEP].
        dupe_factor: int. Times every document is packed. Defaults to 1.
    """
    span_start, span_size = [], []
    for _ in range(dupe_factor):
        for first, end in doc_ranges:
            for pos, size in pack_spans(end - first, rng,
                                        max_seq_length=max_seq_length,
                                        short_seq_prob=short_seq_prob):
                span_start.append(first + pos)
                span_size.append(size)
    num, length = len(span_start), max_seq_length
    size = np.array(span_size, np.int64)
    column = np.arange(length - 2)
    inside = column < size[:, None]
    index = np.minimum(np.array(span_start, np.int64)[:, None] + column,
                       max(len(ids) - 1, 0))
    rows = np.arange(num)
    tokens = np.zeros((num, length), np.int32)  # [CLS] span [SEP] padding
    word_starts = np.zeros((num, length), bool)
    if num:
        tokens[:, 1:-1] = np.where(inside, ids[index], 0)
        word_starts[:, 1:-1] = inside & starts[index]
    tokens[:, 0] = cls_id
    tokens[rows, size + 1] = sep_id
    word_starts[:, :2] = True
    word_starts[rows, size + 1] = True
    return PackedBatch(tokens, word_starts, np.zeros((num, length), np.int32),
                       size + 2)


def pack_stream(ids: np.ndarray, doc_ranges: list, *, max_seq_length: int,
                sep_id: int) -> PackedBatch:
    """The documents at token ranges of `ids`, each followed by [SEP], as
    one stream cut into rows of L tokens (the last one shorter).

    Args:
        ids: np.ndarray. int32 `[T]`, the token stream.
        doc_ranges: list. (first, end) token range of each document.
        max_seq_length: int. L.
        sep_id: int. Id of [SEP].
    """
    sep = np.array([sep_id], np.int32)
    stream = np.concatenate([np.zeros(0, np.int32)] + [
        part for first, end in doc_ranges for part in (ids[first:end], sep)])
    length = max_seq_length
    num = -(-len(stream) // length)
    tokens = np.zeros(num * length, np.int32)
    tokens[:len(stream)] = stream
    shape = (num, length)
    return PackedBatch(tokens.reshape(shape), np.zeros(shape, bool),
                       np.zeros(shape, np.int32),
                       np.minimum(length, len(stream) - length * np.arange(
                           num, dtype=np.int64)))


def stack(instances: list, max_seq_length: int, *,
          next_sentence: bool = False) -> PackedBatch:
    """Pads sequences of their own length into a batch.

    Args:
        instances: list. Objects with `tokens`, `word_starts`, `segment_ids`
            arrays of one length <= L (and `is_random_next` for NSP), such
            as `nsp.PairInstance`.
        max_seq_length: int. L.
        next_sentence: bool. Keep the `is_random_next` labels. Defaults to
            False.
    """
    num, length = len(instances), max_seq_length
    tokens = np.zeros((num, length), np.int32)
    word_starts = np.zeros((num, length), bool)
    segment_ids = np.zeros((num, length), np.int32)
    lengths = np.zeros(num, np.int64)
    for i, inst in enumerate(instances):
        n = len(inst.tokens)
        tokens[i, :n] = inst.tokens
        word_starts[i, :n] = inst.word_starts
        segment_ids[i, :n] = inst.segment_ids
        lengths[i] = n
    labels = None
    if next_sentence:
        labels = np.array([int(inst.is_random_next) for inst in instances],
                          np.int64)
    return PackedBatch(tokens, word_starts, segment_ids, lengths, labels)


def concat(batches: list) -> PackedBatch:
    """The rows of several `PackedBatch`es of one L, in order (at least one
    batch; NSP labels kept when the batches have them)."""
    labels = None
    if batches[0].next_sentence_labels is not None:
        labels = np.concatenate([b.next_sentence_labels for b in batches])
    return PackedBatch(*(np.concatenate([getattr(b, name) for b in batches])
                         for name in ("tokens", "word_starts", "segment_ids",
                                      "lengths")), labels)
