"""Masked-LM masking in tf.data, drawn per batch from a seed.

Same semantics and output features as static masking (`masking`): eligible
tokens are the non-special ones; `num_to_predict = min(P, max(1, round(n *
rate)))` (the product in float64, rounded half to even, as static masking:
in float32 190 * 0.15 would round to 29 instead of 28); whole-word groups
(each eligible token its own group with `whole_word=False`, Google's
default) are taken in a random order, a group that would overshoot
is skipped; chosen tokens become [MASK] (80%), a random non-special id (10%)
or stay (10%); positions sorted, zero padded to P.

Randomness is stateless: every draw is keyed on (seed, pipeline id, batch
index), so the same seed gives the same masks, each epoch of a repeated
dataset gets new ones, and skipping batches to resume reproduces the rest.
The random words are a hashed counter (`hashed_bits`), which the compiled
kernel (`data_pipeline/native`) reproduces bit for bit: the masker uses that
kernel when it is built (≈0.5 ms per batch of 256 on one core instead of
≈5 ms) and these TensorFlow ops otherwise, with identical masks.
"""

import numpy as np
import tensorflow as tf

from data_pipeline import native
from data_pipeline import vocab_layout

# Groups of the random order tried first (see DynamicMasker.__call__).
_PREFIX_GROUPS = 32
# Random streams: group order, replacement kind, replacement id.
_ORDER, _KIND, _PICK = 0, 1, 2
# A slot's token becomes [MASK] when its 24-bit draw u24 < 0.8 * 2^24, a
# random id when u24 < 0.9 * 2^24 (thresholds rounded up), else stays.
_MASK_BELOW = 13421773
_RANDOM_BELOW = 15099495
_GOLDEN = 0x9E3779B9
_IMPLEMENTATIONS = ("auto", "native", "ops")


class DynamicMasker:
    """Masks batches of `input_ids` / `word_starts`.

    Args:
        layout: VocabLayout. Special ids and replacement candidates.
        max_predictions_per_seq: int. P.
        masked_lm_prob: float. Fraction of eligible tokens. Defaults to 0.15.
        whole_word: bool. Mask whole words as units; False: every eligible
            token on its own (the records' `word_starts` are then unused).
            Defaults to True.
        implementation: str. "native" (the compiled kernel; ValueError when
            it is not built), "ops" (TensorFlow ops) or "auto" (native when
            built, else ops). Same masks either way. Defaults to "auto".

    Example:
        masker = DynamicMasker(VocabLayout(500), 20)
        out = masker(batch, seed=tf.constant([1, 0], tf.int64))
    """

    def __init__(self, layout: vocab_layout.VocabLayout,
                 max_predictions_per_seq: int, masked_lm_prob: float = 0.15,
                 whole_word: bool = True, implementation: str = "auto"):
        if not 0.0 < masked_lm_prob < 1.0:
            raise ValueError(f"`masked_lm_prob` must be in (0, 1). Received: "
                             f"masked_lm_prob={masked_lm_prob}")
        if implementation not in _IMPLEMENTATIONS:
            raise ValueError(f"`implementation` must be one of "
                             f"{_IMPLEMENTATIONS}. Received: "
                             f"implementation={implementation!r}")
        self._kernel = None
        if implementation != "ops":
            self._kernel = native.load()
            if self._kernel is None and implementation == "native":
                raise ValueError(
                    f"implementation='native' but the dynamic-masking kernel "
                    f"{native.library_path()} is not built or does not load. "
                    f"Build it with `{native.BUILD_COMMAND}`, or pass "
                    "implementation='auto'.")
        self.max_predictions_per_seq = int(max_predictions_per_seq)
        self.masked_lm_prob = float(masked_lm_prob)
        self.whole_word = whole_word
        self.mask_id = layout.mask_id
        self._is_special = tf.constant(layout.is_special)
        self._candidates = tf.constant(layout.replacement_ids, tf.int32)

    def __call__(self, batch: dict, seed) -> dict:
        """Returns `batch` with `input_ids` masked, `masked_lm_*` added and
        `word_starts` removed.

        Args:
            batch: dict. int32 `input_ids`, `word_starts` `[B, L]` (other
                features pass through).
            seed: int64 `[2]` tensor. Stateless RNG key.
        """
        batch = dict(batch)
        if self._kernel is not None:
            return self._call_kernel(batch, seed)
        ids = batch["input_ids"]
        starts = tf.cast(batch.pop("word_starts"), tf.bool)
        preds = self.max_predictions_per_seq
        shape = tf.shape(ids)
        length = shape[1]
        seed = tf.cast(seed, tf.int64)
        # (batch, seq): eligible tokens and whole-word groups.
        eligible = ~tf.gather(self._is_special, ids)
        if self.whole_word:
            previous = tf.pad(eligible[:, :-1], [[0, 0], [1, 0]])
            group_start = eligible & (starts | ~previous)
        else:
            group_start = eligible
        group_of = tf.cumsum(tf.cast(group_start, tf.int32), axis=1) - 1
        group_of = tf.maximum(group_of, 0)
        num_groups = tf.reduce_sum(tf.cast(group_start, tf.int32), axis=1)
        rows = tf.range(shape[0])[:, None] * length
        sizes = tf.reshape(tf.math.unsorted_segment_sum(
            tf.reshape(tf.cast(eligible, tf.int32), [-1]),
            tf.reshape(group_of + rows, [-1]), shape[0] * length),
            shape)  # (batch, G): tokens in each group.
        num_eligible = tf.reduce_sum(tf.cast(eligible, tf.int32), axis=1)
        target = tf.cast(tf.round(  # float64, half to even: as static masking
            tf.cast(num_eligible, tf.float64)
            * tf.constant(self.masked_lm_prob, tf.float64)), tf.int32)
        target = tf.minimum(preds, tf.maximum(1, target))
        target = tf.where(num_eligible > 0, target, 0)
        # Random order of the existing groups (missing groups last): 24-bit
        # keys, exact in float32.
        keys = tf.cast(tf.bitwise.right_shift(
            hashed_bits(seed, _ORDER, shape), 8), tf.float32) * 2.0 ** -24
        exists = tf.range(length)[None, :] < num_groups[:, None]
        scores = tf.where(exists, keys, 2.0)

        def chosen_groups(num_tried):
            """Google's rule on the first `num_tried` groups of the random
            order (ties: lower index first, as a stable argsort), mapped back
            to group order: chosen[b, order[b, i]] = chosen_ordered[b, i]."""
            order = tf.math.top_k(-scores, k=num_tried).indices
            ordered = tf.gather(sizes, order, batch_dims=1)
            chosen_ordered = _take_greedily(ordered, target)  # (batch, tried)
            remaining = target - tf.reduce_sum(
                tf.where(chosen_ordered, ordered, 0), axis=1)
            chosen = tf.math.unsorted_segment_sum(
                tf.reshape(tf.cast(chosen_ordered, tf.int32), [-1]),
                tf.reshape(order + rows, [-1]), shape[0] * length)
            return chosen, remaining

        static_length = ids.shape[1]
        if static_length is not None and static_length > _PREFIX_GROUPS:
            # A row is decided once its budget is spent or all its groups were
            # tried; the groups further down the order cannot change it. The
            # first _PREFIX_GROUPS almost always decide every row (each taken
            # group holds >= 1 token, budgets are <= P); when one does not,
            # the batch is redone over all groups. Same masks either way.
            prefix, remaining = chosen_groups(_PREFIX_GROUPS)
            decided = (remaining == 0) | (num_groups <= _PREFIX_GROUPS)
            chosen_group = tf.cond(tf.reduce_all(decided), lambda: prefix,
                                   lambda: chosen_groups(static_length)[0])
        else:
            chosen_group = chosen_groups(length)[0]
        selected = eligible & (tf.gather(chosen_group, group_of + rows) > 0)
        # Sorted positions of the selected tokens, zero padded to P: the k-th
        # selected token of a row goes to slot k (k < count <= target <= P),
        # the others to a spare slot P that is dropped.
        count = tf.reduce_sum(tf.cast(selected, tf.int32), axis=1)
        valid = tf.range(preds)[None, :] < count[:, None]  # (batch, P)
        slot = tf.where(selected, tf.cumsum(tf.cast(selected, tf.int32),
                                            axis=1) - 1, preds)
        slot_rows = tf.range(shape[0])[:, None]
        positions = tf.math.unsorted_segment_sum(
            tf.reshape(tf.where(selected, tf.range(length)[None, :], 0), [-1]),
            tf.reshape(slot + slot_rows * (preds + 1), [-1]),
            shape[0] * (preds + 1))
        positions = tf.reshape(positions, [shape[0], preds + 1])[:, :preds]
        flat = positions + slot_rows * length  # (batch, P) into (batch * L)
        masked_ids = tf.where(valid, tf.gather(tf.reshape(ids, [-1]), flat), 0)
        # 80% [MASK], 10% random non-special id, 10% unchanged: one draw per
        # prediction slot (the k-th selected token of a row reads slot k).
        slots = tf.stack([shape[0], preds])
        kind, random_ids = replacement_draws(seed, slots, self._candidates)
        replacement = tf.where(kind < _MASK_BELOW, self.mask_id,
                               tf.where(kind < _RANDOM_BELOW, random_ids,
                                        masked_ids))
        change = tf.math.unsorted_segment_sum(
            tf.reshape(tf.where(valid, replacement - masked_ids, 0), [-1]),
            tf.reshape(flat, [-1]), shape[0] * length)
        batch["input_ids"] = ids + tf.reshape(change, shape)
        batch["masked_lm_positions"] = positions
        batch["masked_lm_ids"] = masked_ids
        batch["masked_lm_weights"] = tf.cast(valid, tf.float32)
        static = ids.shape[0]
        for name in ("masked_lm_positions", "masked_lm_ids",
                     "masked_lm_weights"):
            batch[name] = tf.ensure_shape(batch[name], [static, preds])
        return batch

    def _call_kernel(self, batch, seed):
        """The same masks from the compiled kernel (one op per batch)."""
        ids = batch["input_ids"]
        starts = batch.pop("word_starts")
        (batch["input_ids"], batch["masked_lm_positions"],
         batch["masked_lm_ids"], batch["masked_lm_weights"]) = (
             self._kernel.dynamic_mask(
                 tf.cast(ids, tf.int32), tf.cast(starts, tf.int32),
                 tf.cast(seed, tf.int64), self._is_special, self._candidates,
                 tf.constant(self.masked_lm_prob, tf.float64),
                 max_predictions=self.max_predictions_per_seq,
                 whole_word=self.whole_word, mask_id=self.mask_id))
        return batch


def _mix32(h):
    """MurmurHash3's 32-bit finaliser on uint32 tensors."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))
    h = h * tf.constant(0x85EBCA6B, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 13))
    h = h * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, 16))


def hashed_bits(seed, stream: int, shape) -> tf.Tensor:
    """Random uint32 words of one stream, a pure function of (seed, stream,
    flat index): `mix32(mix32(i * φ + a) ^ b)`, with (a, b) hashed from the
    four 32-bit halves of the int64 `[2]` seed and the stream number. The
    compiled kernel computes the same words (`HashedBits` there)."""
    seed = tf.cast(seed, tf.int64)
    halves = [tf.cast(tf.bitwise.right_shift(seed[1], 32), tf.uint32),
              tf.cast(seed[1], tf.uint32),
              tf.cast(tf.bitwise.right_shift(seed[0], 32), tf.uint32),
              tf.cast(seed[0], tf.uint32)]
    h = _mix32(halves[0] + tf.constant(_GOLDEN * (stream + 1) % 2 ** 32,
                                       tf.uint32))
    for half in halves[1:]:
        h = _mix32(half + h)
    a, b = h, _mix32(h + tf.constant(_GOLDEN, tf.uint32))
    index = tf.cast(tf.range(tf.reduce_prod(shape)), tf.uint32)
    words = _mix32(tf.bitwise.bitwise_xor(
        _mix32(index * tf.constant(_GOLDEN, tf.uint32) + a), b))
    return tf.reshape(words, shape)


def replacement_draws(seed, slots, candidates):
    """Per prediction slot `[B, P]`: the 24-bit draw that decides [MASK] /
    random / unchanged (int32), and the random candidate id."""
    kind = tf.cast(tf.bitwise.right_shift(hashed_bits(seed, _KIND, slots), 8),
                   tf.int32)
    pick = tf.bitwise.right_shift(
        tf.cast(hashed_bits(seed, _PICK, slots), tf.int64)
        * tf.cast(tf.shape(candidates)[0], tf.int64), 32)
    return kind, tf.gather(candidates, tf.cast(pick, tf.int32))


def _take_greedily(sizes, target):
    """Google's rule, vectorised: groups taken in order, one that would
    overshoot the remaining budget skipped, later ones may still fit.

    Equal to the sequential scan `total += size if total + size <= target`.
    Each pass works on the undecided groups (in order): it accepts every one
    whose running sum fits the remaining budget (the groups the scan takes
    before its next skip), then rejects every undecided group larger than the
    budget left, which includes the one that stopped the run. A rejection is
    final because the budget never grows, and a rejected group leaves the
    scan's total unchanged, so the undecided groups with the new budget are
    again the same problem. After the first pass every undecided group fits
    the budget, so each pass accepts at least one group and the largest
    undecided size drops below the stopping group's: at most 1 + (number of
    distinct group sizes) passes.

    Args:
        sizes: int32 `[B, G]`. Group sizes in the order they are tried
            (0: no group).
        target: int32 `[B]`. Budget of each row.

    Returns:
        bool `[B, G]`: the groups taken.
    """
    def step(undecided, taken, remaining):
        running = tf.cumsum(tf.where(undecided, sizes, 0), axis=1)
        accept = undecided & (running <= remaining[:, None])
        remaining -= tf.reduce_sum(tf.where(accept, sizes, 0), axis=1)
        undecided &= ~accept & (sizes <= remaining[:, None])
        return undecided, taken | accept, remaining

    undecided = (sizes > 0) & (sizes <= target[:, None])
    _, taken, _ = tf.while_loop(
        lambda undecided, *_: tf.reduce_any(undecided), step,
        (undecided, tf.zeros_like(undecided), target),
        maximum_iterations=tf.shape(sizes)[1])
    return taken


def masking_rate(manifest, masked_lm_prob: float | None = None,
                 data_dir: str = "") -> float:
    """The rate dynamic masking draws `manifest`'s records at: the records'
    own (`manifest.masked_lm_prob`) when `masked_lm_prob` is None, else
    `masked_lm_prob`, checked against the records.

    A rate of its own needs dynamic-masking records (static ones carry their
    masks), and must fit the records' `max_predictions_per_seq` P: a full
    sequence has `max_seq_length - 2` eligible tokens (`- 3` with NSP pairs:
    [CLS] and one [SEP] per segment), of which `round(n * rate)` are masked
    but at most P, so a rate beyond P / n would silently mask fewer.

    Args:
        manifest: `features.Manifest`. The records'. Required.
        masked_lm_prob: float | None. The fraction of eligible tokens to mask,
            in (0, 1); None for the records' own. Defaults to None.
        data_dir: str. Where the records are (for messages). Defaults to "".

    Returns:
        The rate (float).

    Raises:
        ValueError: a rate out of (0, 1), for static or non-MLM records, or
            over what P holds; the message names the fix.
    """
    if masked_lm_prob is None:
        return float(manifest.masked_lm_prob)
    where = f"the records in {data_dir!r}" if data_dir else "the records"
    if isinstance(masked_lm_prob, bool) or not isinstance(masked_lm_prob, (int, float)) \
            or not 0.0 < masked_lm_prob < 1.0:
        raise ValueError(f"`masked_lm_prob` (data.masked_lm_prob) must be a number in (0, 1), "
                         f"or null for the records' own rate. Received: "
                         f"masked_lm_prob={masked_lm_prob!r}")
    if manifest.masking != "dynamic":
        held = (f"masks drawn at {manifest.masked_lm_prob:g} when built"
                if manifest.masking == "static" else f"task {manifest.task!r}, no masks")
        raise ValueError(
            f"masked_lm_prob={masked_lm_prob} (data.masked_lm_prob) needs dynamic-masking "
            f"records, but {where} have masking={manifest.masking!r} ({held}). Rebuild them "
            "with `python -m data_pipeline.build --masking=dynamic`, or leave "
            "data.masked_lm_prob null.")
    eligible = manifest.max_seq_length - (3 if manifest.next_sentence else 2)
    wanted = int(np.round(np.float64(eligible) * np.float64(masked_lm_prob)))
    if wanted > manifest.max_predictions_per_seq:
        raise ValueError(
            f"masked_lm_prob={masked_lm_prob} (data.masked_lm_prob) masks up to {wanted} of "
            f"the {eligible} maskable tokens of a full sequence, more than {where} hold "
            f"(max_predictions_per_seq={manifest.max_predictions_per_seq}): the rate would "
            f"be cut to {manifest.max_predictions_per_seq / eligible:.3g}. Rebuild them with "
            f"--max_predictions_per_seq={wanted} or more, or lower data.masked_lm_prob to "
            f"{manifest.max_predictions_per_seq / eligible:.3g} or less.")
    return float(masked_lm_prob)


def batch_seed(seed: int, pipeline_id: int, batch_index) -> tf.Tensor:
    """The stateless key of one batch: (seed, pipeline id, batch index)."""
    base = tf.constant([np.int64(seed), np.int64(pipeline_id)], tf.int64)
    return tf.random.experimental.stateless_fold_in(
        base, tf.cast(batch_index, tf.int64))
