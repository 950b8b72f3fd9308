"""Keras 3 building blocks of Google's BERT, with Google's numerics.

tanh-approximate GELU, LayerNorm epsilon 1e-12, truncated-normal(0.02)
initialisation; softmax and LayerNorm computed in float32. Every sublayer has
an explicit name, so variable paths are stable (`checkpoint_names.py` maps
them to Google's and Hugging Face's names). Dropout is the hashed one of
`dropout.py`. Attention and the encoder block take an optional fixed-shape
key/value cache, which generation decodes with.
"""

import math

import keras
from keras import ops

# The names (config imports no Keras).
from pretraining.config import ACTIVATIONS, FEED_FORWARDS, LAYER_NORM_POSITIONS, TANH_GELUS
from pretraining.config_base import require_choice
from pretraining.dropout import Dropout, fold_key

LAYER_NORM_EPSILON = 1e-12


def gelu(x):
    """Google BERT's GELU: the tanh approximation."""
    return keras.activations.gelu(x, approximate=True)


def gelu_exact(x):
    """The exact GELU, x·Φ(x) with erf (Hugging Face's `"gelu"`)."""
    return keras.activations.gelu(x, approximate=False)


def get_activation(name: str):
    if name in TANH_GELUS:
        return gelu
    if name == "gelu_exact":
        return gelu_exact
    if name == "relu":
        return keras.activations.relu
    raise ValueError(f"`hidden_act` must be one of {list(ACTIVATIONS)}. Received: {name!r}")


def initializer(stddev: float):
    return keras.initializers.TruncatedNormal(stddev=stddev)


def layer_norm(name: str, condition_size: int = 0,
               layer_norm_eps: float = LAYER_NORM_EPSILON):
    """LayerNorm in float32 whatever the dtype policy (as Keras and Google do),
    conditional when `condition_size` > 0."""
    return LayerNorm(layer_norm_eps=layer_norm_eps, condition_size=condition_size,
                     dtype="float32", name=name)


class ConfigLayer(keras.layers.Layer):
    """A layer whose constructor arguments (`_keep_args`) are attributes of
    the same names and make up its `get_config()`."""

    def _keep_args(self, **args):
        for name, value in args.items():
            setattr(self, name, value)
        self._arg_names = tuple(args)

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in self._arg_names})
        return config


@keras.saving.register_keras_serializable(package="pretraining")
class LayerNorm(ConfigLayer):
    """Layer normalisation, optionally conditional (kexue.fm/archives/7124).

    `x̂·(γ + W_γ·c) + (β + W_β·c)` with `x̂` the normalised input and `c` a
    condition vector per example; `W_γ`, `W_β` start at zero, so a model with
    pretrained `γ`, `β` gives the unconditional output until training moves
    them. Without a condition it is Google's LayerNorm.

    Args:
        layer_norm_eps: float. Added to the variance. Defaults to 1e-12 (Google BERT).
        condition_size: int. Size of `c`; 0 for a plain LayerNorm. Defaults to 0.

    Call arguments:
        x: float tensor `(..., hidden)`.
        condition: float tensor `(batch, condition_size)`, when conditional.
    """

    def __init__(self, layer_norm_eps=LAYER_NORM_EPSILON, condition_size=0, **kwargs):
        super().__init__(**kwargs)
        self._keep_args(layer_norm_eps=layer_norm_eps, condition_size=condition_size)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.gamma = self.add_weight(shape=(dim,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(dim,), initializer="zeros", name="beta")
        if self.condition_size:
            for name in ("gamma_dense", "beta_dense"):
                dense = keras.layers.Dense(dim, use_bias=False, kernel_initializer="zeros",
                                           dtype="float32", name=name)
                setattr(self, name, dense)
                dense.build((None, self.condition_size))
        self.built = True

    def call(self, x, condition=None):
        x = ops.cast(x, "float32")
        # Mean and variance over the last axis as products with a 1/dim
        # column: XLA:CPU runs them as matrix-vector products, faster than
        # its split (reduce-window) reductions; the same two-pass formula.
        average = ops.full((x.shape[-1], 1), 1.0 / x.shape[-1], dtype="float32")
        centered = x - ops.matmul(x, average)
        variance = ops.matmul(centered * centered, average)
        normalized = centered * ops.rsqrt(variance + self.layer_norm_eps)
        gamma, beta = self.gamma, self.beta
        if self.condition_size:
            if condition is None:
                raise ValueError(f"LayerNorm {self.name!r} is conditional: pass `condition`.")
            # (batch, hidden) → broadcast over the positions of `x`.
            shape = [ops.shape(x)[0]] + [1] * (len(x.shape) - 2) + [x.shape[-1]]
            gamma = gamma + ops.reshape(self.gamma_dense(condition), shape)
            beta = beta + ops.reshape(self.beta_dense(condition), shape)
        return normalized * gamma + beta


@keras.saving.register_keras_serializable(package="pretraining")
class BertEmbeddings(ConfigLayer):
    """Word + position + token-type embeddings, LayerNorm, dropout.

    Args:
        vocab_size: int. Size of the word-piece vocabulary.
        hidden_size: int. Width of the embeddings.
        max_position_embeddings: int. Longest sequence the position table covers.
        type_vocab_size: int. Number of segment ids.
        hidden_dropout_prob: float. Dropout after the LayerNorm. Defaults to 0.1.
        initializer_range: float. Stddev of the truncated-normal initialiser of
            the three tables. Defaults to 0.02.
        condition_size: int. >0: the LayerNorm is conditional on a vector of
            this size. Defaults to 0.
        layer_norm_eps: float. Epsilon of the LayerNorm. Defaults to 1e-12 (Google's).

    Call arguments:
        input_ids: int tensor `(batch, seq)`.
        segment_ids: int tensor `(batch, seq)`.
        condition: float tensor `(batch, condition_size)` when conditional.
        positions: int tensor `(batch, seq)`, the position of each token;
            None for `0 … seq-1` (a whole sequence). A key/value-cached decoder
            passes the positions of its new tokens.
        training: bool. Whether dropout is applied.
        dropout_key: the dropout key (`dropout.Dropout`'s `key`). Defaults
            to None.
    """

    def __init__(self, vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                 hidden_dropout_prob=0.1, initializer_range=0.02, condition_size=0,
                 layer_norm_eps=LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self._keep_args(vocab_size=vocab_size, hidden_size=hidden_size,
                        max_position_embeddings=max_position_embeddings,
                        type_vocab_size=type_vocab_size, hidden_dropout_prob=hidden_dropout_prob,
                        initializer_range=initializer_range, condition_size=condition_size,
                        layer_norm_eps=layer_norm_eps)
        init = initializer(initializer_range)
        self.word_embeddings = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init, dtype=self.dtype_policy,
            name="word_embeddings")
        self.token_type_embeddings = keras.layers.Embedding(
            type_vocab_size, hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="token_type_embeddings")
        self.position_embeddings = keras.layers.Embedding(
            max_position_embeddings, hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="position_embeddings")
        self.layer_norm = layer_norm("LayerNorm", condition_size, layer_norm_eps)
        self.dropout = Dropout(hidden_dropout_prob, dtype=self.dtype_policy, name="dropout")

    def build(self, input_shape=None):
        self.word_embeddings.build(None)
        self.token_type_embeddings.build(None)
        self.position_embeddings.build(None)
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, input_ids, segment_ids, condition=None, positions=None, training=False,
             dropout_key=None):
        x = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        x = x + self.token_type_embeddings(segment_ids)
        if positions is None:  # 0 … seq-1: a slice of the table, broadcast over the batch
            seq_len = ops.shape(input_ids)[1]
            x = x + ops.cast(self.position_embeddings.embeddings[:seq_len], x.dtype)[None]
        else:
            x = x + ops.cast(self.position_embeddings(positions), x.dtype)
        x = self.layer_norm(x, condition)
        return self.dropout(ops.cast(x, self.compute_dtype), training=training, key=dropout_key)


@keras.saving.register_keras_serializable(package="pretraining")
class SelfAttention(ConfigLayer):
    """Multi-head scaled dot-product self-attention with an additive mask bias,
    and an optional fixed-shape key/value cache for decoding.

    With a `cache`, the keys and values of the `T` new tokens are written into
    it at positions `cache_index … cache_index+T-1` (a one-hot update: every
    shape stays fixed), and the new tokens attend to all `max_length` cached
    positions, the bias deciding which they see.

    Args:
        hidden_size: int. Model width (query/key/value/output are `hidden_size` wide).
        num_attention_heads: int. Number of heads; must divide `hidden_size`.
        attention_probs_dropout_prob: float. Dropout on the attention
            probabilities. Defaults to 0.1.
        initializer_range: float. Stddev of the truncated-normal initialiser.
            Defaults to 0.02.

    Call arguments:
        x: float tensor `(batch, T, hidden)`.
        bias: float32 tensor broadcastable to `(batch, heads, T, keys)`; `keys`
            is `T` without a cache, `max_length` with one.
        cache: float tensor `(batch, 2, heads, max_length, head_size)`, the
            keys then the values, or None. Defaults to None.
        cache_index: int tensor `(batch,)`, the position of the first new
            token in each row's cache. Defaults to None.
        training: bool. Whether dropout is applied.
        dropout_key: the dropout key (`dropout.Dropout`'s `key`). Defaults
            to None.
        query_positions: int tensor `(batch, R)`, or None (no cache): the
            rows whose outputs are wanted. Queries are taken there only,
            keys and values everywhere, and dropout drops what it drops at
            those rows of the whole output. Defaults to None: every row.

    Returns:
        `(batch, T, hidden)` (`(batch, R, hidden)` with `query_positions`);
        with a cache, `(output, updated cache)`.
    """

    def __init__(self, hidden_size, num_attention_heads, attention_probs_dropout_prob=0.1,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError("`hidden_size` must be divisible by `num_attention_heads`. "
                             f"Received: hidden_size={hidden_size}, "
                             f"num_attention_heads={num_attention_heads}")
        self._keep_args(hidden_size=hidden_size, num_attention_heads=num_attention_heads,
                        attention_probs_dropout_prob=attention_probs_dropout_prob,
                        initializer_range=initializer_range)
        self.head_size = hidden_size // num_attention_heads
        init = initializer(initializer_range)
        self.query = keras.layers.Dense(hidden_size, kernel_initializer=init,
                                        dtype=self.dtype_policy, name="query")
        self.key = keras.layers.Dense(hidden_size, kernel_initializer=init,
                                      dtype=self.dtype_policy, name="key")
        self.value = keras.layers.Dense(hidden_size, kernel_initializer=init,
                                        dtype=self.dtype_policy, name="value")
        self.dropout = Dropout(attention_probs_dropout_prob, dtype=self.dtype_policy,
                               name="dropout")

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value):
            dense.build(input_shape)
        self.built = True

    @staticmethod
    def _write_cache(cache, cache_index, k, v):
        """`cache` with `k`, `v` (batch, heads, T, head_size) written at
        positions `cache_index … cache_index+T-1`."""
        new = ops.arange(ops.shape(k)[2], dtype="int32")[None]
        positions = ops.cast(cache_index, "int32")[:, None] + new  # (batch, T)
        write = ops.one_hot(positions, ops.shape(cache)[3], dtype=cache.dtype)  # (batch, T, L)
        keep = 1.0 - ops.max(write, axis=1)[:, None, None, :, None]  # (batch, 1, 1, L, 1)
        keys_values = ops.stack([k, v], axis=1)  # (batch, 2, heads, T, head_size)
        return cache * keep + ops.einsum("btl,bkhtd->bkhld", write, keys_values)

    def _project(self, x, dense_layers):
        """`x` through `dense_layers` (query, key, value) in one matmul, the
        kernels side by side (`hidden, n·hidden`), so the checkpoint keeps
        Google's separate variables: one `(batch, T, heads, head_size)`
        tensor per layer."""
        dtype = self.compute_dtype
        kernel = ops.concatenate([ops.cast(d.kernel, dtype) for d in dense_layers], axis=1)
        bias = ops.concatenate([ops.cast(d.bias, dtype) for d in dense_layers], axis=0)
        out = ops.matmul(x, kernel) + bias  # (batch, T, n·hidden)
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        out = ops.reshape(out, (batch, seq, len(dense_layers), self.num_attention_heads,
                                self.head_size))
        # `unstack`, not slices: its gradient is one stack of dq, dk, dv where
        # the slices' is three padded adds (attention alone, forward +
        # backward under XLA: 0.91x the time, BERT-base shapes).
        return ops.unstack(out, len(dense_layers), axis=2)

    def call(self, x, bias, cache=None, cache_index=None, training=False, dropout_key=None,
             query_positions=None):
        length = x.shape[1]
        if query_positions is None:
            q, k, v = self._project(x, (self.query, self.key, self.value))
        else:  # queries at those rows only; keys and values at every row
            query_positions = ops.cast(query_positions, "int32")
            (q,) = self._project(take_rows(x, query_positions), (self.query,))
            k, v = self._project(x, (self.key, self.value))
            if bias.shape[2] != 1:
                bias = ops.take_along_axis(bias, query_positions[:, None, :, None], axis=2)
        if cache is None:
            scores = ops.einsum("bqhd,bkhd->bhqk", q, k)
        else:
            q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
            cache = self._write_cache(cache, cache_index, k, v)
            k, v = cache[:, 0], cache[:, 1]  # (batch, heads, max_length, head_size)
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (batch, heads, T, keys)
        scores = ops.cast(scores, "float32") * (1.0 / math.sqrt(self.head_size))
        probs = ops.softmax(scores + ops.cast(bias, "float32"), axis=-1)
        probs = self.dropout(ops.cast(probs, self.compute_dtype), training=training,
                             key=dropout_key, positions=query_positions, axis=2, length=length)
        if cache is None:
            context = ops.einsum("bhqk,bkhd->bqhd", probs, v)
        else:
            context = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        rows = ops.shape(x)[1] if query_positions is None else ops.shape(query_positions)[1]
        output = ops.reshape(context, (ops.shape(x)[0], rows, self.hidden_size))
        return output if cache is None else (output, cache)


def take_rows(x, positions):
    """`x[b, positions[b, r]]`: `(batch, R, ...)` from `(batch, T, ...)`."""
    positions = ops.cast(positions, "int32")
    return ops.take_along_axis(x, ops.reshape(positions, ops.shape(positions) + (1,) * (
        len(x.shape) - 2)), axis=1)


@keras.saving.register_keras_serializable(package="pretraining")
class TransformerLayer(ConfigLayer):
    """One BERT encoder block: Google's `transformer_model` body (post-LayerNorm,
    dense feed-forward layer) by default.

    Post-LayerNorm: `x = LN1(x + attention(x))`, `x = LN2(x + ffn(x))`.
    Pre-LayerNorm: `x = x + attention(LN1(x))`, `x = x + ffn(LN2(x))` (the
    encoder then normalises the last block's output). Dense feed-forward:
    `act(x W1) W3`; GLU: `(act(x W1) * (x W2)) W3`. Variable names are the
    same in every variant (`attention_layer_norm` is LN1, `output_layer_norm`
    LN2, `intermediate` W1, `output` W3); the GLU adds `intermediate_linear` (W2).

    Args:
        hidden_size: int. Model width.
        num_attention_heads: int. Attention heads.
        intermediate_size: int. Width of the feed-forward layer.
        hidden_act: str. Feed-forward activation: 'gelu' (tanh approximation), 'gelu_exact'
            (erf) or 'relu'. Defaults to 'gelu'.
        hidden_dropout_prob: float. Dropout on the attention and feed-forward
            outputs. Defaults to 0.1.
        attention_probs_dropout_prob: float. Dropout on the attention
            probabilities. Defaults to 0.1.
        initializer_range: float. Stddev of the truncated-normal initialiser of
            every kernel. Defaults to 0.02.
        condition_size: int. >0: both LayerNorms (after attention, after the
            feed-forward layer) are conditional on a vector of this size.
            Defaults to 0.
        layer_norm_eps: float. Epsilon of both LayerNorms. Defaults to 1e-12 (Google's).
        layer_norm_position: str. "post" (Google's) or "pre". Defaults to "post".
        feed_forward: str. "dense" (Google's) or "glu". Defaults to "dense".

    Call arguments:
        x: float tensor `(batch, T, hidden)`.
        bias: float32 additive attention bias `(batch, 1, T, keys)`.
        condition: float tensor `(batch, condition_size)` when conditional.
        cache, cache_index: the attention's key/value cache and where the new
            tokens go in it (see `SelfAttention`). Default to None.
        training: bool. Whether dropout is applied.
        dropout_key: the block's dropout key (`dropout.Dropout`'s `key`),
            folded with 0, 1, 2 for its three dropouts. Defaults to None.
        positions: int tensor `(batch, R)`, or None (no cache): the rows
            whose outputs are wanted. The block then computes those rows
            only (attention reads the keys and values of every row), with
            the dropout masks the whole output has there. Defaults to None.

    Returns:
        `(batch, T, hidden)` (`(batch, R, hidden)` with `positions`); with a
        cache, `(output, updated cache)`.
    """

    def __init__(self, hidden_size, num_attention_heads, intermediate_size, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 initializer_range=0.02, condition_size=0, layer_norm_eps=LAYER_NORM_EPSILON,
                 layer_norm_position="post", feed_forward="dense", **kwargs):
        super().__init__(**kwargs)
        require_choice("layer_norm_position", layer_norm_position, LAYER_NORM_POSITIONS)
        require_choice("feed_forward", feed_forward, FEED_FORWARDS)
        self._keep_args(hidden_size=hidden_size, num_attention_heads=num_attention_heads,
                        intermediate_size=intermediate_size, hidden_act=hidden_act,
                        hidden_dropout_prob=hidden_dropout_prob,
                        attention_probs_dropout_prob=attention_probs_dropout_prob,
                        initializer_range=initializer_range, condition_size=condition_size,
                        layer_norm_eps=layer_norm_eps, layer_norm_position=layer_norm_position,
                        feed_forward=feed_forward)
        init = initializer(initializer_range)
        self.attention = SelfAttention(hidden_size, num_attention_heads,
                                       attention_probs_dropout_prob, initializer_range,
                                       dtype=self.dtype_policy, name="attention")
        self.attention_output = keras.layers.Dense(
            hidden_size, kernel_initializer=init, dtype=self.dtype_policy, name="attention_output")
        self.attention_dropout = Dropout(hidden_dropout_prob, dtype=self.dtype_policy,
                                         name="attention_dropout")
        self.attention_layer_norm = layer_norm("attention_layer_norm", condition_size,
                                               layer_norm_eps)
        self.intermediate = keras.layers.Dense(
            intermediate_size, activation=get_activation(hidden_act), kernel_initializer=init,
            dtype=self.dtype_policy, name="intermediate")
        if feed_forward == "glu":  # W2, the linear half of the gated unit
            self.intermediate_linear = keras.layers.Dense(
                intermediate_size, kernel_initializer=init, dtype=self.dtype_policy,
                name="intermediate_linear")
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init,
                                               dtype=self.dtype_policy, name="output")
        self.output_dropout = Dropout(hidden_dropout_prob, dtype=self.dtype_policy,
                                      name="output_dropout")
        self.output_layer_norm = layer_norm("output_layer_norm", condition_size, layer_norm_eps)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.attention_output.build(input_shape)
        self.attention_layer_norm.build(input_shape)
        self.intermediate.build(input_shape)
        if self.feed_forward == "glu":
            self.intermediate_linear.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_layer_norm.build(input_shape)
        self.built = True

    def call(self, x, bias, condition=None, cache=None, cache_index=None, training=False,
             dropout_key=None, positions=None):
        pre = self.layer_norm_position == "pre"
        normed = self._norm(self.attention_layer_norm, x, condition) if pre else x
        attended = self.attention(normed, bias, cache=cache, cache_index=cache_index,
                                  training=training, dropout_key=fold_key(dropout_key, 0),
                                  query_positions=positions)
        if cache is not None:
            attended, cache = attended
        length = x.shape[1]
        if positions is not None:  # from here on, every op is row by row
            x = take_rows(x, positions)
        attended = self.attention_dropout(self.attention_output(attended), training=training,
                                          key=fold_key(dropout_key, 1), positions=positions,
                                          length=length)
        if pre:
            x = x + attended
            normed = self._norm(self.output_layer_norm, x, condition)
        else:
            x = normed = self._norm(self.attention_layer_norm, x + attended, condition)
        hidden = self.output_dense(self._feed_forward(normed))  # (batch, T or R, hidden)
        hidden = self.output_dropout(hidden, training=training, key=fold_key(dropout_key, 2),
                                     positions=positions, length=length)
        x = x + hidden if pre else self._norm(self.output_layer_norm, x + hidden, condition)
        return x if cache is None else (x, cache)

    def _norm(self, norm, x, condition):
        """`norm(x)` (float32) back in the compute dtype."""
        return ops.cast(norm(x, condition), self.compute_dtype)

    def _feed_forward(self, x):
        """`act(x W1)`, times `x W2` with the GLU: `(batch, T, intermediate_size)`."""
        hidden = self.intermediate(x)
        if self.feed_forward == "glu":
            hidden = hidden * self.intermediate_linear(x)
        return hidden
