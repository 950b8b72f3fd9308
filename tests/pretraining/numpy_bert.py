"""An independent NumPy implementation of Google's BERT forward pass (the
reference the Keras model is checked against). Weights come as a dict of
Google checkpoint-style arrays per layer."""

import numpy as np


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def transformer_layer(x, input_mask, w, num_heads):
    """x: (batch, seq, hidden) float64; w: dict of arrays (q/k/v/o kernels, ...)."""
    batch, seq, hidden = x.shape
    d = hidden // num_heads

    def heads(t):
        return t.reshape(batch, seq, num_heads, d).transpose(0, 2, 1, 3)

    q = heads(x @ w["q_kernel"] + w["q_bias"])
    k = heads(x @ w["k_kernel"] + w["k_bias"])
    v = heads(x @ w["v_kernel"] + w["v_bias"])
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    scores = scores + (1.0 - input_mask[:, None, None, :]) * -10000.0
    context = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    attention = layer_norm(context @ w["o_kernel"] + w["o_bias"] + x, w["ln1_gamma"], w["ln1_beta"])
    intermediate = gelu(attention @ w["i_kernel"] + w["i_bias"])
    return layer_norm(intermediate @ w["out_kernel"] + w["out_bias"] + attention,
                      w["ln2_gamma"], w["ln2_beta"])


def embeddings(input_ids, segment_ids, w):
    seq = input_ids.shape[1]
    x = w["word"][input_ids] + w["type"][segment_ids] + w["position"][:seq][None]
    return layer_norm(x, w["ln_gamma"], w["ln_beta"])


_GOOGLE_LAYER = {"q": "attention/self/query", "k": "attention/self/key",
                 "v": "attention/self/value", "o": "attention/output/dense",
                 "i": "intermediate/dense", "out": "output/dense",
                 "ln1": "attention/output/LayerNorm", "ln2": "output/LayerNorm"}


def google_sequence_output(g, batch, num_layers, num_heads):
    """`sequence_output` (float64) of the weights `g`, a dict of Google's
    checkpoint names (`bert/encoder/layer_0/attention/self/query/kernel`, …)."""
    w = lambda name: np.asarray(g[name], "float64")
    x = embeddings(batch["input_ids"], batch["segment_ids"], {
        "word": w("bert/embeddings/word_embeddings"),
        "type": w("bert/embeddings/token_type_embeddings"),
        "position": w("bert/embeddings/position_embeddings"),
        "ln_gamma": w("bert/embeddings/LayerNorm/gamma"),
        "ln_beta": w("bert/embeddings/LayerNorm/beta")})
    for n in range(num_layers):
        layer = {}
        for short, name in _GOOGLE_LAYER.items():
            first, second = ("gamma", "beta") if short.startswith("ln") else ("kernel", "bias")
            prefix = f"bert/encoder/layer_{n}/{name}/"
            layer[f"{short}_{first}"] = w(prefix + first)
            layer[f"{short}_{second}"] = w(prefix + second)
        x = transformer_layer(x, batch["input_mask"].astype("float64"), layer, num_heads)
    return x
