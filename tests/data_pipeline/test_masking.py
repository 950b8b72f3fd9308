import time

import numpy as np
import pytest

from data_pipeline import features
from data_pipeline import masking
from data_pipeline import vocab_layout
from tests.data_pipeline import masking_reference

VOCAB = 1000
P = 20
L = 128
LAYOUT = vocab_layout.VocabLayout(VOCAB, dict(features.SPECIAL_IDS))


def _sequences(n, seed=0):
    """Random sequences: [CLS] body [SEP] [PAD]..., some [UNK]/[MASK] inside."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(10, L - 1))
        body = rng.integers(features.NUM_SPECIAL_IDS, VOCAB, size=length)
        body[rng.random(length) < 0.02] = features.UNK_ID
        body[rng.random(length) < 0.01] = features.MASK_ID
        starts = rng.random(length) < 0.6
        starts[0] = True
        tokens = np.concatenate([[features.CLS_ID], body, [features.SEP_ID],
                                 np.zeros(L - length - 2, int)])
        ws = np.concatenate([[True], starts, [True], np.ones(L - length - 2,
                                                              bool)])
        out.append((tokens.astype(np.int32), ws))
    return out


def _mask(seqs, rng, prob=0.15):
    """`mask_batch` of (tokens, word starts) rows of length L."""
    tokens = np.stack([t for t, _ in seqs])
    ws = np.stack([w for _, w in seqs])
    return masking.mask_batch(tokens, np.full(len(seqs), L), ws, rng,
                              max_predictions_per_seq=P, masked_lm_prob=prob,
                              layout=LAYOUT)


@pytest.fixture(scope="module")
def masked():
    seqs = _sequences(2500)
    return seqs, _mask(seqs, np.random.default_rng(123))


def test_statistics(masked):
    seqs, m = masked
    eligible = chosen = n_mask = n_same = n_random = 0
    for row, (tokens, ws) in enumerate(seqs):
        n_elig = int((tokens >= features.NUM_SPECIAL_IDS).sum())
        k = int(m.num_predictions[row])
        target = min(P, max(1, round(n_elig * 0.15)))
        assert 1 <= k <= target
        eligible += n_elig
        chosen += k
        pos = m.masked_lm_positions[row, :k]
        assert np.all(np.diff(pos) > 0)  # sorted, unique
        assert not m.masked_lm_positions[row, k:].any()
        assert not m.masked_lm_ids[row, k:].any()
        np.testing.assert_array_equal(m.masked_lm_weights[row],
                                      np.arange(P) < k)
        # Targets are the original tokens, never special.
        np.testing.assert_array_equal(m.masked_lm_ids[row, :k], tokens[pos])
        assert m.masked_lm_ids[row, :k].min() >= features.NUM_SPECIAL_IDS
        # Nothing outside the chosen positions changes.
        untouched = np.ones(L, bool)
        untouched[pos] = False
        np.testing.assert_array_equal(m.input_ids[row][untouched],
                                      tokens[untouched])
        new = m.input_ids[row][pos]
        n_mask += int((new == features.MASK_ID).sum())
        n_same += int((new == tokens[pos]).sum())
        is_random = (new != features.MASK_ID) & (new != tokens[pos])
        n_random += int(is_random.sum())
        assert np.all(new[new != features.MASK_ID] >= features.NUM_SPECIAL_IDS)
        # Whole words: every group is fully chosen or not at all.
        chosen_set = set(pos.tolist())
        for group in masking_reference.groups(tokens, ws, LAYOUT.is_special):
            hits = sum(p in chosen_set for p in group)
            assert hits in (0, len(group))
    assert 0.135 < chosen / eligible < 0.155, chosen / eligible
    # Random ids equal to the original by chance (1/995) count as "same".
    assert abs(n_mask / chosen - 0.8) < 0.02
    assert abs(n_random / chosen - 0.1) < 0.02
    assert abs(n_same / chosen - 0.1) < 0.02


def partly_masked_words(tokens, word_starts, positions, layout=LAYOUT):
    """(words of >= 2 pieces with some but not all pieces chosen, words of
    >= 2 pieces) over rows; `positions[r]` are row r's chosen positions."""
    partly = multi = 0
    for row, chosen in enumerate(positions):
        chosen = set(np.asarray(chosen).tolist())
        for word in masking_reference.groups(tokens[row], word_starts[row],
                                             layout.is_special):
            if len(word) > 1:
                multi += 1
                hits = sum(p in chosen for p in word)
                partly += 0 < hits < len(word)
    return partly, multi


@pytest.mark.parametrize("whole_word", [True, False])
def test_word_pieces_masked_independently_without_whole_words(whole_word):
    """whole_word=False (Google's default): a word's pieces are chosen on
    their own, so some multi-piece words are partly masked, at about the
    rate of independent choices; whole_word=True never masks part of one."""
    seqs = _sequences(1000, seed=11)
    tokens, ws = np.stack([t for t, _ in seqs]), np.stack([w for _, w in seqs])
    m = masking.mask_batch(tokens, np.full(len(seqs), L), ws,
                           np.random.default_rng(4), max_predictions_per_seq=P,
                           layout=LAYOUT, whole_word=whole_word)
    positions = [m.masked_lm_positions[r, :m.num_predictions[r]]
                 for r in range(len(seqs))]
    partly, multi = partly_masked_words(tokens, ws, positions)
    if whole_word:
        assert partly == 0
    else:
        # Two pieces each chosen with p ~= 0.15 on their own: one of them
        # alone ~= 2 * 0.15 * 0.85 = 0.26 of the two-piece words.
        assert 0.15 < partly / multi < 0.4, (partly, multi)


def test_num_to_predict_token_level():
    """One-token words always fit: the budget is reached exactly."""
    seqs = [(t, np.ones(L, bool)) for t, _ in _sequences(200, seed=3)]
    m = _mask(seqs, np.random.default_rng(0))
    for row, (tokens, _) in enumerate(seqs):
        n_elig = int((tokens >= features.NUM_SPECIAL_IDS).sum())
        assert m.num_predictions[row] == min(P, max(1, round(n_elig * 0.15)))


def test_deterministic_per_seed():
    seqs = _sequences(50, seed=5)
    a, b, c = (_mask(seqs, np.random.default_rng(s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.masked_lm_positions, b.masked_lm_positions)
    assert not np.array_equal(a.masked_lm_positions, c.masked_lm_positions)


def test_only_special_tokens():
    tokens = np.array([[2, 1, 4, 3, 0, 0]], np.int32)
    rng = np.random.default_rng(0)
    m = masking.mask_batch(tokens, [6], np.ones((1, 6), bool), rng,
                           max_predictions_per_seq=3, layout=LAYOUT)
    assert m.num_predictions[0] == 0
    np.testing.assert_array_equal(m.input_ids, tokens)
    assert not m.masked_lm_weights.any()
    assert rng.random() == np.random.default_rng(0).random()  # nothing drawn


def test_speed():
    seqs = _sequences(2000, seed=9)
    start = time.perf_counter()
    _mask(seqs, np.random.default_rng(0))
    rate = len(seqs) / (time.perf_counter() - start)
    # About 100k rows/s on one core; the bound leaves room for a loaded
    # CI machine.
    assert rate > 10_000, rate


@pytest.mark.parametrize("whole_word", [True, False])
def test_mask_batch_equals_reference_row_by_row(whole_word):
    layout = vocab_layout.VocabLayout(VOCAB, dict(features.SPECIAL_IDS),
                                      ((10, 20),))
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, L + 1, 300)
    tokens = rng.integers(0, VOCAB, (300, L)).astype(np.int32)
    tokens[rng.random(tokens.shape) < 0.05] = features.UNK_ID
    tokens[:5] = features.CLS_ID  # rows with nothing eligible draw nothing
    ws = rng.random(tokens.shape) < 0.6
    for prob in (0.15, 0.5):
        batch_rng, row_rng = np.random.default_rng(7), np.random.default_rng(7)
        m = masking.mask_batch(tokens, lengths, ws, batch_rng,
                               max_predictions_per_seq=P, masked_lm_prob=prob,
                               layout=layout, whole_word=whole_word)
        for i, n in enumerate(lengths):
            one = masking_reference.mask_tokens(
                tokens[i, :n], ws[i, :n], row_rng, vocab_size=VOCAB,
                layout=layout, max_predictions_per_seq=P, masked_lm_prob=prob,
                whole_word=whole_word)
            np.testing.assert_array_equal(m.input_ids[i, :n], one.input_ids)
            np.testing.assert_array_equal(m.input_ids[i, n:], tokens[i, n:])
            np.testing.assert_array_equal(m.masked_lm_positions[i],
                                          one.masked_lm_positions)
            np.testing.assert_array_equal(m.masked_lm_ids[i],
                                          one.masked_lm_ids)
            np.testing.assert_array_equal(m.masked_lm_weights[i],
                                          one.masked_lm_weights)
            assert m.num_predictions[i] == one.num_predictions
        assert batch_rng.random() == row_rng.random()  # same draws consumed


def test_empty_batch():
    rng = np.random.default_rng(0)
    m = masking.mask_batch(np.zeros((0, L), np.int32), np.zeros(0, np.int64),
                           np.zeros((0, L), bool), rng,
                           max_predictions_per_seq=P, layout=LAYOUT)
    assert m.input_ids.shape == (0, L) and m.masked_lm_positions.shape == (0, P)
    assert m.masked_lm_weights.shape == (0, P) and m.num_predictions.shape == (0,)
    assert rng.random() == np.random.default_rng(0).random()  # nothing drawn
