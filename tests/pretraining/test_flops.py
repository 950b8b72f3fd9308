from pretraining.config import BertConfig
from pretraining.flops import mlm_train_flops


def test_flops_match_a_hand_count():
    """Every matmul of the forward pass listed by hand, 2·m·n·k each, ×3."""
    config = BertConfig(vocab_size=10, hidden_size=4, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=8)
    B, S, M, H, I, V, L = 2, 3, 2, 4, 8, 10, 2
    matmuls = []  # (m, n, k) per forward matmul
    for _ in range(L):
        matmuls += [(B * S, H, H)] * 4            # query, key, value, attention output
        matmuls += [(B * S, I, H), (B * S, H, I)]  # feed-forward in and out
        matmuls += [(S, S, H // 2)] * 2 * B * 2    # scores and context, per sequence and head
    matmuls += [(B * M, H, H), (B * M, V, H)]      # MLM transform, logits at masked positions
    forward = sum(2 * m * n * k for m, n, k in matmuls)
    assert mlm_train_flops(config, B, S, M) == 3 * forward


def test_glu_feed_forward_adds_its_second_matrix():
    """feed_forward="glu": x·W1 and x·W2 (both H→I) then ·W3 (I→H), per layer,
    on top of the dense count; pre-LayerNorm adds no matmul."""
    kwargs = dict(vocab_size=10, hidden_size=4, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=8)
    B, S, M, H, I, L = 2, 3, 2, 4, 8, 2
    dense = mlm_train_flops(BertConfig(**kwargs), B, S, M)
    glu = mlm_train_flops(BertConfig(feed_forward="glu", **kwargs), B, S, M)
    assert glu - dense == 3 * L * 2 * (B * S) * I * H
    assert mlm_train_flops(BertConfig(layer_norm_position="pre", **kwargs), B, S, M) == dense
