"""Model FLOPs of a masked-LM train step (matmuls only; backward = 2× forward).

    6·N·T + 12·L·B·S²·H + 6·M·(H² + H·V),   N = L·(4H² + 2HI), T = B·S

(with `feed_forward="glu"`, N = L·(4H² + 3HI): the gate's second matrix).
N: encoder matmul parameters, T: tokens, M: masked positions scored by the
head (only those: the head gathers them before the vocabulary matmul).
Embedding lookups, LayerNorm, softmax and the optimizer are not counted, as
in the usual MFU convention.
"""


def mlm_train_flops(config, batch_size: int, seq_length: int, masked_per_seq: int) -> float:
    """FLOPs of one optimizer step on `batch_size` sequences.

    Args:
        config: `BertConfig` (or anything with its size fields).
        batch_size: int. Sequences per step (global).
        seq_length: int. Tokens per sequence.
        masked_per_seq: int. Positions the masked-LM head scores per sequence.
    """
    layers, hidden = config.num_hidden_layers, config.hidden_size
    intermediate, vocab = config.intermediate_size, config.vocab_size
    feed_forward_matrices = 3 if getattr(config, "feed_forward", "dense") == "glu" else 2
    params = layers * (4 * hidden * hidden + feed_forward_matrices * hidden * intermediate)
    tokens = batch_size * seq_length
    masked = batch_size * masked_per_seq
    return float(6 * params * tokens
                 + 12 * layers * batch_size * seq_length ** 2 * hidden
                 + 6 * masked * (hidden * hidden + hidden * vocab))
