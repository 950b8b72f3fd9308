"""Attention-mask functions: which key positions each query position may see.

Each function returns a boolean tensor `(batch, seq, seq)`: `mask[b, i, j]` is
True when query token `i` may attend to key token `j`. Every variant is
combined with the padding mask (`input_mask`), so no token attends to padding.
The model turns the result into an additive float32 bias.
"""

from keras import ops


def padding_mask(input_mask):
    """`(batch, seq)` 0/1 padding mask → `(batch, 1, seq)` boolean key mask."""
    return ops.expand_dims(ops.cast(input_mask, "bool"), axis=1)


def bidirectional(input_mask):
    """BERT: every token sees every non-padding token.

    For `input_mask = [1, 1, 1, 1, 0]` every row is the key mask:

        1 1 1 1 0
        1 1 1 1 0
        1 1 1 1 0
        1 1 1 1 0
        1 1 1 1 0
    """
    keys = padding_mask(input_mask)
    seq_len = ops.shape(input_mask)[1]
    return ops.broadcast_to(keys, (ops.shape(input_mask)[0], seq_len, seq_len))


def mask_bias(mask, dtype="float32"):
    """Boolean `(batch, seq, seq)` mask → additive bias `(batch, 1, seq, seq)`.

    Allowed positions get 0, others -10000 (Google BERT's value: large enough
    to zero the softmax, small enough to stay finite in float16).
    """
    bias = ops.where(mask, ops.zeros((), dtype), ops.full((), -10000.0, dtype))
    return ops.expand_dims(bias, axis=1)


MASK_FUNCTIONS = {"bidirectional": bidirectional}


def get_mask_function(name: str):
    if name not in MASK_FUNCTIONS:
        raise ValueError(f"`attention_mask_type` must be one of {sorted(MASK_FUNCTIONS)}. "
                         f"Received: attention_mask_type={name!r}")
    return MASK_FUNCTIONS[name]


