"""Static masked-LM masking (Google BERT semantics, whole-word groups by
default; with `whole_word=False` every eligible token is its own group, as
Google's default `--do_whole_word_mask=false`).

For each row of a padded batch: of the eligible tokens (every id the
`VocabLayout` does not call special, so never [PAD]/[UNK]/[CLS]/[SEP]/[MASK]/
[unusedN]) pick `num_to_predict = min(P, max(1, round(n_eligible *
masked_lm_prob)))` tokens (the product in float64, rounded half to even)
as whole-word groups in a seeded random order; a group that would overshoot
`num_to_predict` is skipped (Google's rule). Each chosen token becomes [MASK]
with probability 0.8, a uniformly random non-special id with 0.1, and stays
unchanged with 0.1. Positions are sorted.

Random numbers: a row with G >= 1 groups takes `u = rng.random(G + 2P)`;
`u[:G]` orders the groups (ascending, ties by position), and for the k-th
chosen position `u[G + k]` picks [MASK] (< 0.8), a random id (< 0.9) or
unchanged, and `u[G + P + k]` the random id,
`replacement_ids[floor(u * len(replacement_ids))]`. A row with no eligible
token draws nothing. The rows' draws follow each other in one
`rng.random` call (one stream, however grouped), so a row's masks do not
depend on how the rows are batched; only the greedy group choice is left
in Python.
"""

import dataclasses

import numpy as np

from data_pipeline import vocab_layout


@dataclasses.dataclass(frozen=True)
class MaskedBatch:
    """Masked rows of a padded batch.

    Args:
        input_ids: np.ndarray. int32 `[N, L]`, tokens after masking, padded
            as the input.
        masked_lm_positions: np.ndarray. int32 `[N, P]`.
        masked_lm_ids: np.ndarray. int32 `[N, P]`.
        masked_lm_weights: np.ndarray. float32 `[N, P]`.
        num_predictions: np.ndarray. int64 `[N]`.
    """

    input_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_lm_weights: np.ndarray
    num_predictions: np.ndarray


def mask_batch(tokens: np.ndarray, lengths: np.ndarray,
               word_starts: np.ndarray, rng: np.random.Generator, *,
               max_predictions_per_seq: int, masked_lm_prob: float = 0.15,
               layout: vocab_layout.VocabLayout,
               whole_word: bool = True) -> MaskedBatch:
    """Masks every row of a padded batch, whole words as groups.

    Row i reads the draws after those of rows 0 .. i - 1 (module docstring).

    Args:
        tokens: int array `[N, L]`. Token ids, any padding after `lengths`.
        lengths: int array `[N]`. Tokens in use per row.
        word_starts: bool array `[N, L]`. True where a token starts a word.
        rng: np.random.Generator. Source of every random choice.
        max_predictions_per_seq: int. P.
        masked_lm_prob: float. Fraction of eligible tokens to mask.
            Defaults to 0.15.
        layout: VocabLayout. Special ids and random replacements.
        whole_word: bool. Whole words are groups; False: each eligible
            token is its own group (word pieces masked independently).
            Defaults to True.

    Returns:
        A `MaskedBatch`.
    """
    tokens = np.asarray(tokens, np.int32)
    num_rows, width = tokens.shape
    preds = max_predictions_per_seq
    in_use = np.arange(width) < np.asarray(lengths)[:, None]
    eligible = ~layout.is_special[tokens] & in_use
    num_eligible = eligible.sum(axis=1)
    num_to_predict = np.minimum(preds, np.maximum(
        1, np.rint(num_eligible * masked_lm_prob).astype(np.int64)))
    previous = np.zeros_like(eligible)
    previous[:, 1:] = eligible[:, :-1]
    starts = np.asarray(word_starts, bool) if whole_word else True
    group_start = eligible & (starts | ~previous)
    # Groups are runs of positions; number them over the flattened batch.
    flat_eligible = eligible.ravel()
    group_of = np.cumsum(group_start.ravel()) - 1
    group_first = np.flatnonzero(group_start.ravel())
    group_sizes = np.bincount(group_of[flat_eligible],
                              minlength=len(group_first))
    groups_per_row = group_start.sum(axis=1)
    first_group = np.cumsum(groups_per_row) - groups_per_row

    # One draw for the whole batch: row i's G_i + 2P numbers, in row order.
    has_groups = groups_per_row > 0
    draws_per_row = np.where(has_groups, groups_per_row + 2 * preds, 0)
    u = rng.random(int(draws_per_row.sum()))
    u_start = np.cumsum(draws_per_row) - draws_per_row

    # Rows x groups, each row's groups in the order of their keys.
    num_groups = len(group_first)
    group_row = np.repeat(np.arange(num_rows), groups_per_row)
    column = np.arange(num_groups) - first_group[group_row]
    keys = np.full((num_rows, int(groups_per_row.max(initial=0))), 2.0)
    keys[group_row, column] = u[u_start[group_row] + column]
    order = np.argsort(keys, axis=1, kind="stable")
    ordered = first_group[:, None] + order  # group ids (past the row: junk)
    in_row = order < groups_per_row[:, None]
    ordered_sizes = np.where(in_row, group_sizes[np.minimum(
        ordered, max(num_groups - 1, 0))] if num_groups else 0, 0)
    # Google's greedy rule, one column for all rows at a time: take a group
    # unless the row is full or the group would overshoot it.
    total = np.zeros(num_rows, np.int64)
    taken = np.zeros(ordered.shape, bool)
    for k in range(ordered.shape[1]):
        open_rows = total < num_to_predict
        if not open_rows.any():
            break
        size = ordered_sizes[:, k]
        take = open_rows & in_row[:, k] & (total + size <= num_to_predict)
        taken[:, k] = take
        total += np.where(take, size, 0)
    counts = total
    is_chosen = np.zeros(num_groups, bool)
    is_chosen[ordered[taken]] = True
    chosen = np.flatnonzero(is_chosen)  # in position order
    chosen_sizes = group_sizes[chosen]
    total = int(chosen_sizes.sum())
    starts_in_out = np.cumsum(chosen_sizes) - chosen_sizes
    flat = (np.repeat(group_first[chosen] - starts_in_out, chosen_sizes)
            + np.arange(total))  # selected positions, flattened, sorted
    original = tokens.ravel()[flat]
    row = np.repeat(np.arange(num_rows), counts)
    slot = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    draw_at = u_start[row] + groups_per_row[row] + slot
    draw = u[draw_at]
    candidates = layout.replacement_ids
    random_ids = candidates[(u[draw_at + preds] * len(candidates)).astype(
        np.int64)]
    masked = tokens.copy()
    masked.ravel()[flat] = np.where(
        draw < 0.8, layout.mask_id, np.where(draw < 0.9, random_ids, original))
    positions = np.zeros((num_rows, preds), np.int32)
    ids = np.zeros((num_rows, preds), np.int32)
    weights = np.zeros((num_rows, preds), np.float32)
    positions[row, slot] = flat - row * width
    ids[row, slot] = original
    weights[row, slot] = 1.0
    return MaskedBatch(masked, positions, ids, weights, counts)
