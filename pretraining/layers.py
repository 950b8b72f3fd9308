"""Keras 3 building blocks of Google's BERT, with Google's numerics.

tanh-approximate GELU, LayerNorm epsilon 1e-12, truncated-normal(0.02)
initialisation; softmax and LayerNorm computed in float32. Every sublayer has
an explicit name, so variable paths are stable (`checkpoint_names.py` maps
them to Google's and Hugging Face's names).
"""

import math

import keras
from keras import ops

from pretraining.config import ACTIVATIONS, TANH_GELUS  # the names (config imports no Keras)

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


def layer_norm(name: str, condition_size: int = 0):
    """LayerNorm in float32 whatever the dtype policy (as Keras and Google do),
    conditional when `condition_size` > 0."""
    return LayerNorm(condition_size=condition_size, dtype="float32", name=name)


# 32-bit words for the hash. TensorFlow and JAX have uint32, whose arithmetic
# wraps modulo 2**32. Keras's torch backend maps "uint32" to int64 (torch has
# no uint32 arithmetic), so there the words are int64 values in [0, 2**32):
# sums are masked back to 32 bits, and products are taken in 16-bit halves
# (no int64 overflow). Same words on every backend; the TensorFlow and JAX ops
# are the plain uint32 ones.
_NATIVE_UINT32 = keras.backend.backend() != "torch"
_LOW32 = 0xFFFFFFFF


def _words(x):
    """Integers → 32-bit words (two's-complement bits of int32 values)."""
    if _NATIVE_UINT32:
        return ops.cast(x, "uint32")
    return ops.bitwise_and(ops.cast(x, "int64"), _LOW32)


def _add32(h, key):
    return h + key if _NATIVE_UINT32 else ops.bitwise_and(h + key, _LOW32)


def _mul32(h, constant: int):
    """`h * constant` modulo 2**32."""
    if _NATIVE_UINT32:
        return h * ops.convert_to_tensor(constant, "uint32")
    low = h * (constant & 0xFFFF)  # < 2**48
    high = ops.bitwise_and(h * (constant >> 16), 0xFFFF)  # bits 16-31 of the product
    return ops.bitwise_and(low + ops.left_shift(high, 16), _LOW32)


def _mix32(h):
    """MurmurHash3's 32-bit finaliser (32-bit words in and out): every input
    bit flips each output bit with probability ~1/2."""
    h = ops.bitwise_xor(h, ops.right_shift(h, 16))
    h = _mul32(h, 0x85EBCA6B)
    h = ops.bitwise_xor(h, ops.right_shift(h, 13))
    h = _mul32(h, 0xC2B2AE35)
    return ops.bitwise_xor(h, ops.right_shift(h, 16))


def hashed_bits(count: int, seed):
    """`count` pseudo-random 32-bit words: a counter hashed with a 2-word key.

    `mix32(mix32(i * φ + seed[0]) ^ seed[1])` for i = 0…count-1: about a dozen
    integer ops per word that XLA fuses into one vectorised loop. The Philox
    generator behind `keras.random` is lowered by XLA on CPU to ~450 ns per
    word (a 1M-element dropout took 120 ms forward+backward, 2 ms hashed).
    Good enough for dropout masks, not a general-purpose generator. The words
    are uint32 (int64 under Keras's torch backend), the same on every backend.
    """
    key = _words(seed)
    index = _words(ops.arange(count, dtype="int32"))
    h = _mix32(_add32(_mul32(index, 0x9E3779B9), key[0]))
    return _mix32(ops.bitwise_xor(h, key[1]))


def hashed_dropout(inputs, rate: float, seed):
    """Dropout of `inputs` (static shape, element count a multiple of 4) with
    the mask drawn from `hashed_bits` keyed on `seed` (2 int32 words): the same
    mask on every backend for the same seed. See `Dropout`."""
    shape = tuple(inputs.shape)
    threshold = min(255, max(1, round(rate * 256)))
    bits = hashed_bits(math.prod(shape) // 4, seed)[None, :]
    shifts = ops.convert_to_tensor([[0], [8], [16], [24]], dtype="uint32")
    # (4, count/4) by broadcasting: no concatenate of the four fields.
    fields = ops.bitwise_and(ops.right_shift(bits, shifts),
                             ops.convert_to_tensor(255, "uint32"))
    keep = ops.reshape(fields >= ops.convert_to_tensor(threshold, "uint32"), shape)
    scale = ops.cast(256.0 / (256 - threshold), inputs.dtype)
    return ops.where(keep, inputs * scale, ops.zeros_like(inputs))


@keras.saving.register_keras_serializable(package="pretraining")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with cheap random bits: a hashed counter, 8 bits
    per element.

    Per call, two 32-bit words are drawn from the layer's seed generator (as
    Keras' dropout does); the mask bits come from `hashed_bits` keyed on
    them, each 32-bit word split by shift-and-mask into four 8-bit fields,
    each compared with the integer threshold `round(rate * 256)`. The rate is
    thus quantised to 1/256: 0.1 → 26/256 ≈ 0.1016; kept values are scaled by
    `256 / (256 - threshold)`, so the expectation is unchanged. On the S
    benchmark under XLA, Keras' dropout was ≈25–30% of the step, and still
    about half of each encoder layer's time with 8-bit Philox fields.

    Masks are a pure function of the seed generator's state (a variable the
    checkpoint saves), so a resumed run draws the same masks. Falls back to
    Keras' dropout when the element count is unknown when traced or not a
    multiple of 4, or with `noise_shape`.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        shape = tuple(inputs.shape)
        count = math.prod(shape) if all(isinstance(d, int) for d in shape) else None
        if not count or count % 4:
            return super().call(inputs, training=training)
        seed = keras.random.randint((2,), -2 ** 31, 2 ** 31 - 1, dtype="int32",
                                    seed=self.seed_generator)
        return hashed_dropout(inputs, self.rate, seed)


@keras.saving.register_keras_serializable(package="pretraining")
class LayerNorm(keras.layers.Layer):
    """Layer normalisation, optionally conditional (kexue.fm/archives/7124).

    `x̂·(γ + W_γ·c) + (β + W_β·c)` with `x̂` the normalised input and `c` a
    condition vector per example; `W_γ`, `W_β` start at zero, so a model with
    pretrained `γ`, `β` gives the unconditional output until training moves
    them. Without a condition it is Google's LayerNorm.

    Args:
        epsilon: float. Added to the variance. Defaults to 1e-12 (Google BERT).
        condition_size: int. Size of `c`; 0 for a plain LayerNorm. Defaults to 0.

    Call arguments:
        x: float tensor `(..., hidden)`.
        condition: float tensor `(batch, condition_size)`, when conditional.
    """

    def __init__(self, epsilon=LAYER_NORM_EPSILON, condition_size=0, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.condition_size = condition_size

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
        mean, variance = ops.moments(x, axes=[-1], keepdims=True)
        normalized = (x - mean) * ops.rsqrt(variance + self.epsilon)
        gamma, beta = self.gamma, self.beta
        if self.condition_size:
            if condition is None:
                raise ValueError(f"LayerNorm {self.name!r} is conditional: pass `condition`.")
            # (batch, hidden) → broadcast over the positions of `x`.
            shape = [ops.shape(x)[0]] + [1] * (len(x.shape) - 2) + [x.shape[-1]]
            gamma = gamma + ops.reshape(self.gamma_dense(condition), shape)
            beta = beta + ops.reshape(self.beta_dense(condition), shape)
        return normalized * gamma + beta

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, condition_size=self.condition_size)
        return config


@keras.saving.register_keras_serializable(package="pretraining")
class BertEmbeddings(keras.layers.Layer):
    """Word + position + token-type embeddings, LayerNorm, dropout.

    Args:
        vocab_size: int. Size of the word-piece vocabulary.
        hidden_size: int. Width of the embeddings.
        max_position_embeddings: int. Longest sequence the position table covers.
        type_vocab_size: int. Number of segment ids.
        dropout_rate: float. Dropout after the LayerNorm.
        initializer_range: float. Stddev of the truncated-normal initialiser.
        condition_size: int. >0: Conditional LayerNorm on a vector of this size.

    Call arguments:
        input_ids: int tensor `(batch, seq)`.
        segment_ids: int tensor `(batch, seq)`.
        condition: float tensor `(batch, condition_size)` when conditional.
        training: bool. Whether dropout is applied.
    """

    def __init__(self, vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                 dropout_rate=0.1, initializer_range=0.02, condition_size=0, **kwargs):
        super().__init__(**kwargs)
        self.condition_size = condition_size
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        init = initializer(initializer_range)
        self.word_embeddings = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init, name="word_embeddings")
        self.token_type_embeddings = keras.layers.Embedding(
            type_vocab_size, hidden_size, embeddings_initializer=init,
            name="token_type_embeddings")
        self.position_embeddings = keras.layers.Embedding(
            max_position_embeddings, hidden_size, embeddings_initializer=init,
            name="position_embeddings")
        self.layer_norm = layer_norm("LayerNorm", condition_size)
        self.dropout = Dropout(dropout_rate, name="dropout")

    def build(self, input_shape=None):
        self.word_embeddings.build(None)
        self.token_type_embeddings.build(None)
        self.position_embeddings.build(None)
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, input_ids, segment_ids, condition=None, training=False):
        seq_len = ops.shape(input_ids)[1]
        x = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        x = x + self.token_type_embeddings(segment_ids)
        positions = ops.cast(self.position_embeddings.embeddings[:seq_len], x.dtype)
        x = x + positions[None]
        x = self.layer_norm(x, condition)
        return self.dropout(ops.cast(x, self.compute_dtype), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      max_position_embeddings=self.max_position_embeddings,
                      type_vocab_size=self.type_vocab_size, dropout_rate=self.dropout_rate,
                      initializer_range=self.initializer_range,
                      condition_size=self.condition_size)
        return config


@keras.saving.register_keras_serializable(package="pretraining")
class SelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product self-attention with an additive mask bias.

    Args:
        hidden_size: int. Model width (query/key/value/output are `hidden_size` wide).
        num_heads: int. Number of heads; must divide `hidden_size`.
        dropout_rate: float. Dropout on the attention probabilities.
        initializer_range: float. Stddev of the truncated-normal initialiser.

    Call arguments:
        x: float tensor `(batch, seq, hidden)`.
        bias: float32 tensor broadcastable to `(batch, heads, seq, seq)`.
        training: bool. Whether dropout is applied.
    """

    def __init__(self, hidden_size, num_heads, dropout_rate=0.1, initializer_range=0.02,
                 **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError("`hidden_size` must be divisible by `num_heads`. Received: "
                             f"hidden_size={hidden_size}, num_heads={num_heads}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        init = initializer(initializer_range)
        self.query = keras.layers.Dense(hidden_size, kernel_initializer=init, name="query")
        self.key = keras.layers.Dense(hidden_size, kernel_initializer=init, name="key")
        self.value = keras.layers.Dense(hidden_size, kernel_initializer=init, name="value")
        self.dropout = Dropout(dropout_rate, name="dropout")

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value):
            dense.build(input_shape)
        self.built = True

    def _split_heads(self, x):
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, seq, self.num_heads, self.head_size))
        return ops.transpose(x, (0, 2, 1, 3))  # (batch, heads, seq, head_size)

    def call(self, x, bias, training=False):
        q = self._split_heads(self.query(x))
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (batch, heads, seq, seq)
        scores = ops.cast(scores, "float32") * (1.0 / math.sqrt(self.head_size))
        probs = ops.softmax(scores + ops.cast(bias, "float32"), axis=-1)
        probs = self.dropout(ops.cast(probs, self.compute_dtype), training=training)
        context = ops.matmul(probs, v)  # (batch, heads, seq, head_size)
        context = ops.transpose(context, (0, 2, 1, 3))
        return ops.reshape(context, (ops.shape(x)[0], ops.shape(x)[1], self.hidden_size))

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      dropout_rate=self.dropout_rate, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="pretraining")
class TransformerLayer(keras.layers.Layer):
    """One post-LayerNorm BERT encoder block (Google's `transformer_model` body).

    Args:
        hidden_size: int. Model width.
        num_heads: int. Attention heads.
        intermediate_size: int. Width of the feed-forward layer.
        hidden_act: str. Feed-forward activation: 'gelu' (tanh approximation), 'gelu_exact'
            (erf) or 'relu'.
        hidden_dropout_rate: float. Dropout on the attention and feed-forward outputs.
        attention_dropout_rate: float. Dropout on the attention probabilities.
        initializer_range: float. Stddev of the truncated-normal initialiser.
        condition_size: int. >0: Conditional LayerNorm on a vector of this size.

    Call arguments:
        x: float tensor `(batch, seq, hidden)`.
        bias: float32 additive attention bias `(batch, 1, seq, seq)`.
        condition: float tensor `(batch, condition_size)` when conditional.
        training: bool. Whether dropout is applied.
    """

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu",
                 hidden_dropout_rate=0.1, attention_dropout_rate=0.1, initializer_range=0.02,
                 condition_size=0, **kwargs):
        super().__init__(**kwargs)
        self.condition_size = condition_size
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_rate = hidden_dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.initializer_range = initializer_range
        init = initializer(initializer_range)
        self.attention = SelfAttention(hidden_size, num_heads, attention_dropout_rate,
                                       initializer_range, name="attention")
        self.attention_output = keras.layers.Dense(
            hidden_size, kernel_initializer=init, name="attention_output")
        self.attention_dropout = Dropout(hidden_dropout_rate, name="attention_dropout")
        self.attention_layer_norm = layer_norm("attention_layer_norm", condition_size)
        self.intermediate = keras.layers.Dense(
            intermediate_size, activation=get_activation(hidden_act), kernel_initializer=init,
            name="intermediate")
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init, name="output")
        self.output_dropout = Dropout(hidden_dropout_rate, name="output_dropout")
        self.output_layer_norm = layer_norm("output_layer_norm", condition_size)

    def build(self, input_shape):
        self.attention.build(input_shape)
        self.attention_output.build(input_shape)
        self.attention_layer_norm.build(input_shape)
        self.intermediate.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_layer_norm.build(input_shape)
        self.built = True

    def call(self, x, bias, condition=None, training=False):
        attended = self.attention(x, bias, training=training)
        attended = self.attention_dropout(self.attention_output(attended), training=training)
        x = ops.cast(self.attention_layer_norm(x + attended, condition), self.compute_dtype)
        hidden = self.output_dense(self.intermediate(x))  # (batch, seq, hidden)
        hidden = self.output_dropout(hidden, training=training)
        return ops.cast(self.output_layer_norm(x + hidden, condition), self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
                      hidden_dropout_rate=self.hidden_dropout_rate,
                      attention_dropout_rate=self.attention_dropout_rate,
                      initializer_range=self.initializer_range,
                      condition_size=self.condition_size)
        return config
