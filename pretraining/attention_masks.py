"""Attention-mask functions: which key positions each query position may see.

Each function returns a boolean tensor `(batch, seq, seq)`: `mask[b, i, j]` is
True when query token `i` may attend to key token `j`. Every variant is
combined with the padding mask (`input_mask`), so no token attends to padding.
The model turns the result into an additive float32 bias (`mask_bias`).
"Transformer如戏，全靠Mask": the same encoder becomes an MLM, a left-to-right
LM or a seq2seq model by its mask alone.
"""

from keras import ops

from pretraining.config import MASK_TYPES  # the names (config imports no Keras)


def padding_mask(input_mask):
    """`(batch, seq)` 0/1 padding mask → `(batch, 1, seq)` boolean key mask."""
    return ops.expand_dims(ops.cast(input_mask, "bool"), axis=1)


def _lower_triangle(seq_len):
    """`(seq, seq)` boolean: `j <= i`."""
    positions = ops.arange(seq_len)
    return positions[None, :] <= positions[:, None]


def bidirectional(input_mask):
    """BERT: every token sees every non-padding token.

    For `input_mask = [1, 1, 1, 1, 0]`:

        1 1 1 1 0
        1 1 1 1 0
        1 1 1 1 0
        1 1 1 1 0
        1 1 1 1 0
    """
    keys = padding_mask(input_mask)
    seq_len = ops.shape(input_mask)[1]
    return ops.broadcast_to(keys, (ops.shape(input_mask)[0], seq_len, seq_len))


def causal(input_mask):
    """Left-to-right LM: a token sees itself and earlier tokens.

    For `input_mask = [1, 1, 1, 1, 0]`:

        1 0 0 0 0
        1 1 0 0 0
        1 1 1 0 0
        1 1 1 1 0
        1 1 1 1 0
    """
    seq_len = ops.shape(input_mask)[1]
    return ops.logical_and(_lower_triangle(seq_len)[None], padding_mask(input_mask))


def unilm(input_mask, segment_ids):
    """UniLM seq2seq: source tokens (segment 0) see the whole source; target
    tokens (segment 1) see the source and the target tokens up to themselves.

    For `segment_ids = [0, 0, 1, 1, 1]`, `input_mask = [1, 1, 1, 1, 0]`:

        1 1 0 0 0
        1 1 0 0 0
        1 1 1 0 0
        1 1 1 1 0
        1 1 1 1 0
    """
    seq_len = ops.shape(input_mask)[1]
    segments = ops.cast(segment_ids, "int32")
    key_is_source = ops.equal(segments, 0)[:, None, :]  # (batch, 1, seq)
    query_is_target = ops.equal(segments, 1)[:, :, None]  # (batch, seq, 1)
    earlier = _lower_triangle(seq_len)[None]
    # A key is visible when it is source, or (the query is target and the key
    # is not later than the query).
    allowed = ops.logical_or(key_is_source, ops.logical_and(query_is_target, earlier))
    return ops.logical_and(allowed, padding_mask(input_mask))


def prefix(input_mask, prefix_length: int):
    """Prefix LM: bidirectional over the first `prefix_length` tokens, causal
    after (a token sees the prefix and tokens up to itself).

    For `prefix_length = 3`, `input_mask = [1, 1, 1, 1, 0]`:

        1 1 1 0 0
        1 1 1 0 0
        1 1 1 0 0
        1 1 1 1 0
        1 1 1 1 0

    (With `prefix_length = 2` it is `unilm`'s mask for a 2-token source.)
    """
    seq_len = ops.shape(input_mask)[1]
    positions = ops.arange(seq_len)
    in_prefix = ops.logical_and(positions[None, :] < prefix_length,
                                positions[:, None] < prefix_length)
    allowed = ops.logical_or(_lower_triangle(seq_len), in_prefix)
    return ops.logical_and(allowed[None], padding_mask(input_mask))


def attention_mask(kind: str, input_mask, segment_ids=None, prefix_length: int = 0):
    """The `(batch, seq, seq)` boolean mask of `kind` (see MASK_TYPES)."""
    if kind == "bidirectional":
        return bidirectional(input_mask)
    if kind == "causal":
        return causal(input_mask)
    if kind == "unilm":
        return unilm(input_mask, segment_ids)
    if kind == "prefix":
        return prefix(input_mask, prefix_length)
    raise ValueError(f"`attention_mask_type` must be one of {list(MASK_TYPES)}. "
                     f"Received: attention_mask_type={kind!r}")


def mask_bias(mask, dtype="float32"):
    """Boolean `(batch, seq, seq)` mask → additive bias `(batch, 1, seq, seq)`.

    Allowed positions get 0, others -10000 (Google BERT's value: large enough
    to zero the softmax, small enough to stay finite in float16).
    """
    bias = ops.where(mask, ops.zeros((), dtype), ops.full((), -10000.0, dtype))
    return ops.expand_dims(bias, axis=1)
