import numpy as np

from data_pipeline import features
from data_pipeline import instances
from tests.data_pipeline import reference


def _doc(start, lengths):
    """Sentences with consecutive ids from `start`; every 3rd id a word start."""
    sentences, starts, next_id = [], [], start
    for n in lengths:
        ids = list(range(next_id, next_id + n))
        next_id += n
        sentences.append(ids)
        starts.append([int(i % 3 == 0) for i in ids])
    return sentences, starts


def _stream(docs):
    """The token stream, word starts and document ranges of `_doc`s."""
    ids, starts, ranges = [], [], []
    for sentences, word_starts in docs:
        first = len(ids)
        ids += [t for s in sentences for t in s]
        starts += [bool(w) for ws in word_starts for w in ws]
        ranges.append((first, len(ids)))
    return np.array(ids, np.int32), np.array(starts, bool), ranges


def _pack(docs, rng, max_seq_length, short_seq_prob, dupe_factor=1):
    ids, starts, ranges = _stream(docs)
    return instances.pack_documents(
        ids, starts, ranges, rng, max_seq_length=max_seq_length,
        short_seq_prob=short_seq_prob, cls_id=features.CLS_ID,
        sep_id=features.SEP_ID, dupe_factor=dupe_factor)


def _rows(batch):
    """Each row's tokens and word starts, unpadded."""
    return [(t[:n], w[:n]) for t, w, n in
            zip(batch.tokens, batch.word_starts, batch.lengths)]


def test_equals_reference_one_document_at_a_time():
    rng = np.random.default_rng(5)
    docs = [_doc(int(rng.integers(10, 10_000)),
                 rng.integers(0, 40, int(rng.integers(1, 6))).tolist())
            for _ in range(30)]
    for length, prob, dupes in ((16, 0.0, 1), (32, 0.5, 2), (9, 0.2, 3)):
        rng = np.random.default_rng(1)
        got = _pack(docs, rng, length, prob, dupes)
        ref_rng = np.random.default_rng(1)
        want = [inst for _ in range(dupes) for sentences, starts in docs
                for inst in reference.create_instances(
                    sentences, starts, ref_rng, max_seq_length=length,
                    short_seq_prob=prob)]
        assert len(_rows(got)) == len(want)
        for (tokens, starts), inst in zip(_rows(got), want):
            np.testing.assert_array_equal(tokens, inst.tokens)
            np.testing.assert_array_equal(starts, inst.word_starts)
        assert not got.segment_ids.any() and not got.tokens[
            np.arange(length) >= got.lengths[:, None]].any()
        assert got.next_sentence_labels is None
        assert rng.random() == ref_rng.random()  # same draws consumed
        assert got.tokens.shape == (len(want), length)


def test_packing_within_document_and_split_long_sentence():
    docs = [_doc(100, [5, 9, 30, 2]), _doc(1000, [3]), _doc(2000, [40])]
    batch = _pack(docs, np.random.default_rng(0), 16, 0.0)
    rows = _rows(batch)
    assert batch.tokens.dtype == np.int32
    for base, total in ((100, 46), (1000, 3), (2000, 40)):
        mine = [t for t, _ in rows if base <= t[1] < base + total]
        body = np.concatenate([t[1:-1] for t in mine])
        # Every token once, in order, all from this document's id range.
        np.testing.assert_array_equal(body, np.arange(base, base + total))
        # Full sequences except the last: the 30-token sentence is split.
        assert [len(t) - 2 for t in mine[:-1]] == [14] * (len(mine) - 1)
    for tokens, starts in rows:
        assert len(tokens) <= 16
        assert tokens[0] == features.CLS_ID and tokens[-1] == features.SEP_ID
        assert starts[1] and starts[0] and starts[-1]


def test_word_starts_carried():
    first, second = _rows(_pack([_doc(9, [20])], np.random.default_rng(0),
                                12, 0.0))
    np.testing.assert_array_equal(first[1][1:-1],
                                  [True] + [i % 3 == 0 for i in range(10, 19)])
    assert second[1][1]  # 19 is not a start, but begins a sequence


def test_short_sequences_seeded():
    def lengths(seed):
        batch = _pack([_doc(5, [2000])], np.random.default_rng(seed), 32, 0.5)
        return batch.lengths.tolist()

    got = lengths(1)
    assert got == lengths(1)
    assert got != lengths(2)
    assert min(got[:-1]) >= 4 and max(got) == 32
    assert 0.3 < np.mean(np.array(got[:-1]) < 32) < 0.7


def test_empty_documents():
    batch = _pack([_doc(5, [0, 0]), _doc(5, [])], np.random.default_rng(0),
                  16, 0.1)
    assert batch.tokens.shape == (0, 16) and batch.lengths.shape == (0,)


def test_pack_stream_joins_documents_with_sep():
    docs = [_doc(100, [5, 9]), _doc(1000, [3]), _doc(2000, [0]),
            _doc(3000, [20])]
    ids, _, ranges = _stream(docs)
    batch = instances.pack_stream(ids, ranges, max_seq_length=8,
                                  sep_id=features.SEP_ID)
    stream = [t for sentences, _ in docs
              for t in [i for s in sentences for i in s] + [features.SEP_ID]]
    want = [stream[i:i + 8] for i in range(0, len(stream), 8)]
    assert batch.lengths.tolist() == [len(w) for w in want]
    for row, w in zip(batch.tokens, want):
        np.testing.assert_array_equal(row, w + [0] * (8 - len(w)))
    empty = instances.pack_stream(ids, [], max_seq_length=8, sep_id=3)
    assert empty.tokens.shape == (0, 8)
