"""Sentence-pair instances as Google's `create_pretraining_data.py` makes
them: `[CLS] A [SEP] B [SEP]`, segment ids 0 then 1.

For next-sentence prediction, B is, with probability 0.5 (always when the
chunk holds one sentence), a random span of another document
(`is_random_next`, label 1), else the sentences that follow A (label 0).
Without `random_next` (seq2seq spans), B always follows A. A document's
target length is L - 3, or with `short_seq_prob` uniform in [2, L - 3].
A (source, target) document (seq2seq pairs) is one pair, truncated to fit.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PairInstance:
    """One `[CLS] A [SEP] B [SEP]` sequence.

    Args:
        tokens: np.ndarray. int32 `[n]`, n <= max_seq_length.
        word_starts: np.ndarray. bool `[n]`; True where a token starts a
            word ([CLS], [SEP] and the first token of A and of B always do).
        segment_ids: np.ndarray. int32 `[n]`: 0 up to the first [SEP], then 1.
        is_random_next: bool. B comes from another document. Defaults to
            False.
    """

    tokens: np.ndarray
    word_starts: np.ndarray
    segment_ids: np.ndarray
    is_random_next: bool = False


def _truncate_pair(a, b, max_num_tokens, rng):
    """Google's truncate_seq_pair on (ids, starts) tuples of arrays."""
    a_lo, a_hi, b_lo, b_hi = 0, len(a[0]), 0, len(b[0])
    while (a_hi - a_lo) + (b_hi - b_lo) > max_num_tokens:
        if a_hi - a_lo > b_hi - b_lo:
            if rng.random() < 0.5:
                a_lo += 1
            else:
                a_hi -= 1
        elif rng.random() < 0.5:
            b_lo += 1
        else:
            b_hi -= 1
    return ((a[0][a_lo:a_hi], a[1][a_lo:a_hi]),
            (b[0][b_lo:b_hi], b[1][b_lo:b_hi]))


def _concat(segments):
    if not segments:
        return np.zeros(0, np.int32), np.zeros(0, bool)
    return (np.concatenate([s[0] for s in segments]).astype(np.int32),
            np.concatenate([s[1] for s in segments]).astype(bool))


def _pair_instance(a, b, cls_id, sep_id, is_random_next=False) -> PairInstance:
    """`[CLS] a [SEP] b [SEP]` from (ids, starts) tuples."""
    one = np.ones(1, bool)
    tokens = np.concatenate([[cls_id], a[0], [sep_id], b[0], [sep_id]])
    starts = np.concatenate([one, a[1], one, b[1], one])
    if len(a[1]):
        starts[1] = True
    if len(b[1]):
        starts[len(a[0]) + 2] = True
    segment_ids = np.concatenate([np.zeros(len(a[0]) + 2, np.int32),
                                  np.ones(len(b[0]) + 1, np.int32)])
    return PairInstance(tokens.astype(np.int32), starts, segment_ids,
                        is_random_next)


def create_pair_instances(documents: list, doc_index: int,
                          rng: np.random.Generator, *, max_seq_length: int,
                          short_seq_prob: float = 0.1, random_next: bool = True,
                          cls_id: int, sep_id: int) -> list[PairInstance]:
    """Pair instances of `documents[doc_index]`.

    Args:
        documents: list. Each document a list of (ids, starts) per sentence;
            random B segments are drawn from the other documents.
        doc_index: int. The document to make instances from.
        rng: np.random.Generator. Every random choice.
        max_seq_length: int. L (>= 5).
        short_seq_prob: float. Probability of a shorter target length.
            Defaults to 0.1.
        random_next: bool. NSP (True) or consecutive spans only (False).
            Defaults to True.
        cls_id, sep_id: int. Special ids.
    """
    document = [s for s in documents[doc_index] if len(s[0])]
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_num_tokens + 1))
    out, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i][0])
        if i == len(document) - 1 or length >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            a = _concat(chunk[:a_end])
            is_random = random_next and (len(chunk) == 1 or rng.random() < 0.5)
            if is_random:
                other = doc_index
                for _ in range(10):
                    other = int(rng.integers(0, len(documents)))
                    if other != doc_index:
                        break
                source = [s for s in documents[other] if len(s[0])] or document
                segments, size = [], 0
                for j in range(int(rng.integers(0, len(source))), len(source)):
                    segments.append(source[j])
                    size += len(source[j][0])
                    if size >= target - len(a[0]):
                        break
                b = _concat(segments)
                i -= len(chunk) - a_end  # Put the unused sentences back.
            else:
                b = _concat(chunk[a_end:])
                if not len(b[0]) and len(a[0]) >= 2:  # One sentence: halve it.
                    cut = int(rng.integers(1, len(a[0])))
                    a, b = (a[0][:cut], a[1][:cut]), (a[0][cut:], a[1][cut:])
            a, b = _truncate_pair(a, b, max_num_tokens, rng)
            if len(a[0]) and len(b[0]):
                out.append(_pair_instance(a, b, cls_id, sep_id, is_random))
            chunk, length = [], 0
        i += 1
    return out


def source_target_instance(document: list, rng: np.random.Generator, *,
                           max_seq_length: int, cls_id: int,
                           sep_id: int) -> PairInstance | None:
    """`[CLS] source [SEP] target [SEP]` of a (source, target) document,
    the longer side cut at random ends until both fit L (Google's
    truncate_seq_pair).

    Args:
        document: list. Two (ids, starts) tuples: source and target.
        rng: np.random.Generator. Draws the truncation.
        max_seq_length: int. L.
        cls_id, sep_id: int. Special ids.

    Returns:
        The instance, or None when the source or the target has no token.
    """
    source, target = _truncate_pair(document[0], document[1],
                                    max_seq_length - 3, rng)
    if not len(source[0]) or not len(target[0]):
        return None
    return _pair_instance(source, target, cls_id, sep_id)
