"""Static masked-LM masking (Google BERT semantics, whole-word groups).

For one sequence: of the eligible tokens (every id the `VocabLayout` does not
call special, so never [PAD]/[UNK]/[CLS]/[SEP]/[MASK]/[unusedN]) pick
`num_to_predict = min(P, max(1, round(n_eligible * masked_lm_prob)))` tokens
as whole-word groups in a seeded random order; a group that would overshoot
`num_to_predict` is skipped (Google's rule). Each chosen token becomes [MASK]
with probability 0.8, a uniformly random non-special id with 0.1, and stays
unchanged with 0.1. Positions are sorted.
"""

import dataclasses
import functools

import numpy as np

from data_pipeline import features
from data_pipeline import vocab_layout


@dataclasses.dataclass(frozen=True)
class MaskedInstance:
    """A masked sequence and its prediction targets.

    Args:
        input_ids: np.ndarray. int32 `[n]`, the tokens after masking.
        masked_lm_positions: np.ndarray. int32 `[P]`, sorted, zero padded.
        masked_lm_ids: np.ndarray. int32 `[P]`, original ids, zero padded.
        masked_lm_weights: np.ndarray. float32 `[P]`, 1.0 for real entries.
        num_predictions: int. Number of real entries.
    """

    input_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_lm_weights: np.ndarray
    num_predictions: int


def mask_tokens(tokens, word_starts, rng: np.random.Generator, *,
                vocab_size: int, max_predictions_per_seq: int,
                masked_lm_prob: float = 0.15,
                whole_word: bool = True,
                layout: vocab_layout.VocabLayout | None = None
                ) -> MaskedInstance:
    """Masks one sequence.

    Args:
        tokens: int array-like `[n]`. Token ids including [CLS]/[SEP].
        word_starts: bool/int array-like `[n]`. 1 where a token starts a word.
        rng: np.random.Generator. Source of every random choice.
        vocab_size: int. Number of ids (used when `layout` is None).
        max_predictions_per_seq: int. P, the padded number of predictions.
        masked_lm_prob: float. Fraction of eligible tokens to mask.
            Defaults to 0.15.
        whole_word: bool. Mask whole words as units. Defaults to True.
        layout: VocabLayout | None. Special ids; random replacements are
            uniform over its non-special ids. Defaults to the SentencePiece
            layout (ids 0-4 special).

    Returns:
        A `MaskedInstance`.
    """
    tokens = np.asarray(tokens, dtype=np.int32)
    preds = max_predictions_per_seq
    layout = layout or _default_layout(vocab_size)
    eligible = ~layout.is_special[tokens]
    num_eligible = int(np.count_nonzero(eligible))
    positions = np.zeros(preds, np.int32)
    ids = np.zeros(preds, np.int32)
    weights = np.zeros(preds, np.float32)
    if num_eligible == 0 or preds == 0:
        return MaskedInstance(tokens.copy(), positions, ids, weights, 0)
    num_to_predict = min(preds, max(1, int(round(num_eligible * masked_lm_prob))))

    if whole_word:
        starts = np.asarray(word_starts, dtype=bool)
        previous_eligible = np.concatenate([[False], eligible[:-1]])
        group_start = eligible & (starts | ~previous_eligible)
    else:
        group_start = eligible
    # Group index of every token (only meaningful where eligible).
    group_of = np.cumsum(group_start) - 1
    group_sizes = np.bincount(group_of[eligible])
    num_groups = len(group_sizes)

    order = rng.permutation(num_groups)
    chosen = np.zeros(num_groups, dtype=bool)
    total = 0
    for group, size in zip(order.tolist(), group_sizes[order].tolist()):
        if total >= num_to_predict:
            break
        if total + size > num_to_predict:
            continue
        chosen[group] = True
        total += size

    selected = np.flatnonzero(eligible & chosen[np.maximum(group_of, 0)])
    count = len(selected)
    draw = rng.random(count)
    candidates = layout.replacement_ids
    random_ids = candidates[rng.integers(0, len(candidates), size=count)]
    masked = tokens.copy()
    replacement = np.where(draw < 0.8, layout.mask_id,
                           np.where(draw < 0.9, random_ids, tokens[selected]))
    masked[selected] = replacement
    positions[:count] = selected
    ids[:count] = tokens[selected]
    weights[:count] = 1.0
    return MaskedInstance(masked, positions, ids, weights, count)


@functools.lru_cache(maxsize=8)
def _default_layout(vocab_size: int) -> vocab_layout.VocabLayout:
    return vocab_layout.VocabLayout(vocab_size, dict(features.SPECIAL_IDS))
