"""Packs a tokenized document into masked-LM training sequences.

Sequences are filled from consecutive sentences of one document (never across
documents); a sentence longer than the remaining space continues in the next
sequence. Each sequence is `[CLS] tokens [SEP]` with segment id 0.
"""

import dataclasses

import numpy as np

from data_pipeline import features


@dataclasses.dataclass(frozen=True)
class Instance:
    """One packed sequence.

    Args:
        tokens: np.ndarray. int32 `[n]`, `[CLS] ... [SEP]`, n <= max_seq_length.
        word_starts: np.ndarray. bool `[n]`; True where a token starts a word.
            [CLS], [SEP] and the first token after [CLS] are always True.
        segment_ids: np.ndarray. int32 `[n]`, all 0 (room for sentence pairs).
    """

    tokens: np.ndarray
    word_starts: np.ndarray
    segment_ids: np.ndarray


def create_instances(sentences: list, word_starts: list,
                     rng: np.random.Generator, *, max_seq_length: int,
                     short_seq_prob: float = 0.1,
                     cls_id: int = features.CLS_ID,
                     sep_id: int = features.SEP_ID) -> list[Instance]:
    """Packs one document into instances.

    Args:
        sentences: list of int sequences. Token ids, one entry per sentence.
        word_starts: list of bool/int sequences, matching `sentences`.
        rng: np.random.Generator. Draws the short-sequence choices.
        max_seq_length: int. L; each instance holds at most L - 2 tokens plus
            [CLS] and [SEP].
        short_seq_prob: float. Probability that a sequence's target length is
            drawn uniformly from [2, L - 2] instead of L - 2. Defaults to 0.1.
        cls_id, sep_id: int. Ids of [CLS] and [SEP]. Default to 2 and 3.

    Returns:
        Instances in document order.
    """
    if max_seq_length < 3:
        raise ValueError(f"`max_seq_length` must be >= 3. Received: "
                         f"max_seq_length={max_seq_length}")
    if len(sentences) != len(word_starts):
        raise ValueError(f"`sentences` and `word_starts` must have the same "
                         f"length. Received: {len(sentences)} and "
                         f"{len(word_starts)}")
    lengths = [len(s) for s in sentences]
    if not sum(lengths):
        return []
    stream = np.concatenate(
        [np.asarray(s, dtype=np.int32) for s in sentences if len(s)])
    starts = np.concatenate(
        [np.asarray(w, dtype=bool) for w in word_starts if len(w)])
    if starts.shape != stream.shape:
        raise ValueError("`word_starts` lengths must match `sentences` lengths.")
    cls = np.array([cls_id], np.int32)
    sep = np.array([sep_id], np.int32)
    true = np.ones(1, bool)
    instances = []
    for pos, size in pack_spans(len(stream), rng,
                                max_seq_length=max_seq_length,
                                short_seq_prob=short_seq_prob):
        chunk_starts = starts[pos:pos + size].copy()
        chunk_starts[0] = True
        tokens = np.concatenate([cls, stream[pos:pos + size], sep])
        instances.append(Instance(
            tokens=tokens,
            word_starts=np.concatenate([true, chunk_starts, true]),
            segment_ids=np.zeros(len(tokens), np.int32)))
    return instances


def pack_spans(num_tokens: int, rng: np.random.Generator, *,
               max_seq_length: int,
               short_seq_prob: float = 0.1) -> list[tuple[int, int]]:
    """The (start, size) token spans `create_instances` packs a document of
    `num_tokens` tokens into, drawing the same random numbers.

    Each span's target size is L - 2, or with `short_seq_prob` uniform in
    [2, L - 2]; the last span takes what is left.
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
