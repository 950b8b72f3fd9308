"""The masking reference: one sequence at a time, driven by given draws.

Static masking (`masking.mask_batch`, NumPy) and dynamic masking
(`dynamic_masking.DynamicMasker`: TensorFlow ops or the C++ kernel) apply
one rule to different random numbers. `mask_row` applies the rule, plainly,
to the draws it is given; `rng_draws` gives static masking's draws (from a
NumPy Generator) and `hashed_draws` dynamic masking's (a hashed counter,
recomputed here in NumPy), so one reference checks all three maskers.

The rule: eligible tokens are the non-special ones; whole-word groups are
runs of eligible tokens, a new one at each word start (each token its own
group without whole-word masking); the budget is
`min(P, max(1, round_half_even(n_eligible * rate)))` (0 without eligible
tokens); groups are tried in increasing (key, group index) order, one that
would overshoot the budget is skipped; the k-th chosen position (in
position order) becomes [MASK] if `kinds[k] < 0.8`, else a random id
`replacement_ids[floor(picks[k] * len(replacement_ids))]` if `kinds[k] <
0.9`, else stays.
"""

import dataclasses

import numpy as np

from data_pipeline import features
from data_pipeline import vocab_layout

_GOLDEN = 0x9E3779B9
_ORDER, _KIND, _PICK = 0, 1, 2  # dynamic masking's random streams


@dataclasses.dataclass(frozen=True)
class Draws:
    """The random numbers of one row, each in [0, 1).

    Args:
        keys: np.ndarray. `[>= G]`; group g (in position order) sorts by
            `keys[g]`.
        kinds: np.ndarray. `[P]`; [MASK] / random id / unchanged.
        picks: np.ndarray. `[P]`; which random id.
    """

    keys: np.ndarray
    kinds: np.ndarray
    picks: np.ndarray


@dataclasses.dataclass(frozen=True)
class Masked:
    """One masked row, fields as the records' (`num_predictions` added)."""

    input_ids: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_lm_weights: np.ndarray
    num_predictions: int


def groups(tokens, word_starts, is_special, whole_word=True) -> list:
    """Whole-word groups of eligible tokens, as lists of positions."""
    out, current = [], None
    for i, (token, start) in enumerate(zip(tokens, word_starts)):
        if is_special[token]:
            current = None
            continue
        if start or current is None or not whole_word:
            current = [i]
            out.append(current)
        else:
            current.append(i)
    return out


def mask_row(tokens, word_starts, draws: Draws, *,
             layout: vocab_layout.VocabLayout, max_predictions_per_seq: int,
             masked_lm_prob: float = 0.15,
             whole_word: bool = True) -> Masked:
    """Masks one row by the rule (module docstring) with `draws`; the
    budget's product `n_eligible * rate` in float64 (static and dynamic
    masking alike; float32 would round 190 * 0.15 up to 29)."""
    tokens = np.asarray(tokens, np.int32)
    preds = max_predictions_per_seq
    row_groups = groups(tokens, word_starts, layout.is_special, whole_word)
    num_eligible = sum(len(g) for g in row_groups)
    budget = 0
    if num_eligible:
        product = np.float64(num_eligible) * np.float64(masked_lm_prob)
        budget = min(preds, max(1, int(np.rint(product))))
    chosen = []
    for g in sorted(range(len(row_groups)), key=lambda g: (draws.keys[g], g)):
        if len(chosen) >= budget:
            break
        if len(chosen) + len(row_groups[g]) <= budget:
            chosen += row_groups[g]
    chosen.sort()
    out = tokens.copy()
    candidates = layout.replacement_ids
    for k, position in enumerate(chosen):
        if draws.kinds[k] < 0.8:
            out[position] = layout.mask_id
        elif draws.kinds[k] < 0.9:
            out[position] = candidates[int(draws.picks[k] * len(candidates))]
    count = len(chosen)
    positions = np.zeros(preds, np.int32)
    ids = np.zeros(preds, np.int32)
    positions[:count] = chosen
    ids[:count] = tokens[chosen]
    return Masked(out, positions, ids,
                  (np.arange(preds) < count).astype(np.float32), count)


def rng_draws(rng: np.random.Generator, num_groups: int,
              preds: int) -> Draws:
    """Static masking's draws of a row with `num_groups` groups: G + 2P
    numbers of one `rng.random` call (none when G is 0)."""
    u = rng.random(num_groups + 2 * preds) if num_groups else np.zeros(
        2 * preds)
    return Draws(u[:num_groups], u[num_groups:num_groups + preds],
                 u[num_groups + preds:])


def mask_tokens(tokens, word_starts, rng: np.random.Generator, *,
                vocab_size: int, max_predictions_per_seq: int,
                masked_lm_prob: float = 0.15, whole_word: bool = True,
                layout: vocab_layout.VocabLayout | None = None) -> Masked:
    """Static masking of one sequence (rows masked in turn with one `rng`
    equal `masking.mask_batch`). `layout` defaults to ids 0-4 special."""
    layout = layout or vocab_layout.VocabLayout(vocab_size,
                                                dict(features.SPECIAL_IDS))
    num_groups = len(groups(np.asarray(tokens), word_starts,
                            layout.is_special, whole_word))
    return mask_row(tokens, word_starts,
                    rng_draws(rng, num_groups, max_predictions_per_seq),
                    layout=layout,
                    max_predictions_per_seq=max_predictions_per_seq,
                    masked_lm_prob=masked_lm_prob, whole_word=whole_word)


def _mix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (uint32 arrays wrap)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def hashed_bits(seed, stream: int, size: int) -> np.ndarray:
    """uint32 words `mix32(mix32(i * golden + a) ^ b)` for i < size, with
    (a, b) hashed from the int64 `[2]` seed's four 32-bit halves and the
    stream number (dynamic masking's counter-based random words)."""
    low, high = (int(s) % 2**64 for s in np.asarray(seed, np.int64))
    halves = [high >> 32, high & 0xFFFFFFFF, low >> 32, low & 0xFFFFFFFF]
    word = np.array([(halves[0] + _GOLDEN * (stream + 1)) % 2**32], np.uint32)
    h = _mix32(word)
    for half in halves[1:]:
        h = _mix32(np.array([half], np.uint32) + h)
    a, b = h, _mix32(h + np.uint32(_GOLDEN))
    index = np.arange(size, dtype=np.uint32)
    return _mix32(_mix32(index * np.uint32(_GOLDEN) + a) ^ b)


def hashed_draws(seed, rows: int, length: int, preds: int) -> list[Draws]:
    """Dynamic masking's draws of a `[rows, length]` batch under one
    stateless key: 24-bit keys and kinds, 32-bit picks."""
    def words(stream, width):
        bits = hashed_bits(seed, stream, rows * width).astype(np.float64)
        return bits.reshape(rows, width)

    keys = np.floor(words(_ORDER, length) / 256) / 2**24
    kinds = np.floor(words(_KIND, preds) / 256) / 2**24
    picks = words(_PICK, preds) / 2**32
    return [Draws(keys[r], kinds[r], picks[r]) for r in range(rows)]
