import numpy as np

from data_pipeline import features
from data_pipeline import instances


def _doc(start, lengths):
    """Sentences with consecutive ids from `start`; every 3rd id a word start."""
    sentences, starts, next_id = [], [], start
    for n in lengths:
        ids = list(range(next_id, next_id + n))
        next_id += n
        sentences.append(ids)
        starts.append([int(i % 3 == 0) for i in ids])
    return sentences, starts


def test_packing_within_document_and_split_long_sentence():
    rng = np.random.default_rng(0)
    max_len = 16
    docs = [_doc(100, [5, 9, 30, 2]), _doc(1000, [3]), _doc(2000, [40])]
    for (sentences, starts), base in zip(docs, [100, 1000, 2000]):
        out = instances.create_instances(sentences, starts, rng,
                                         max_seq_length=max_len,
                                         short_seq_prob=0.0)
        total = sum(len(s) for s in sentences)
        body = np.concatenate([i.tokens[1:-1] for i in out])
        # Every token once, in order, all from this document's id range.
        np.testing.assert_array_equal(body, np.arange(base, base + total))
        for inst in out:
            assert len(inst.tokens) <= max_len
            assert inst.tokens.dtype == np.int32
            assert inst.tokens[0] == features.CLS_ID
            assert inst.tokens[-1] == features.SEP_ID
            assert inst.word_starts[1]
            assert not inst.segment_ids.any()
            assert len(inst.word_starts) == len(inst.tokens)
        # Full sequences except the last: the 30-token sentence is split.
        assert [len(i.tokens) - 2 for i in out[:-1]] == [14] * (len(out) - 1)


def test_word_starts_carried():
    rng = np.random.default_rng(0)
    sentences, starts = _doc(9, [20])
    (first, second) = instances.create_instances(
        sentences, starts, rng, max_seq_length=12, short_seq_prob=0.0)
    np.testing.assert_array_equal(first.word_starts[1:-1],
                                  [True] + [i % 3 == 0 for i in range(10, 19)])
    assert second.word_starts[1]  # 19 is not a start, but begins a sequence


def test_short_sequences_seeded():
    sentences, starts = _doc(5, [2000])

    def lengths(seed):
        out = instances.create_instances(
            sentences, starts, np.random.default_rng(seed), max_seq_length=32,
            short_seq_prob=0.5)
        return [len(i.tokens) for i in out]

    got = lengths(1)
    assert got == lengths(1)
    assert got != lengths(2)
    assert min(got[:-1]) >= 4 and max(got) == 32
    assert 0.3 < np.mean(np.array(got[:-1]) < 32) < 0.7


def test_empty_document():
    assert instances.create_instances([[], []], [[], []],
                                      np.random.default_rng(0),
                                      max_seq_length=16) == []
