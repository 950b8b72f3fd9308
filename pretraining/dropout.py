"""Dropout with cheap random bits: a hashed counter instead of Philox.

XLA on CPU lowers Keras's Philox generator to ~450 ns per 32-bit word; here
the mask bits come from MurmurHash3's finaliser applied to a counter keyed on
two seed words (`hashed_bits`), the same words on every Keras backend. Also
used by generation's sampling noise.
"""

import math

import keras
from keras import ops

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


def _threshold(rate: float) -> int:
    """Dropped 8-bit fields are those below this (of 256)."""
    return min(255, max(1, round(rate * 256)))


def effective_rate(rate: float) -> float:
    """The rate `Dropout` applies for `rate`: a multiple of 1/256 (0.1 runs
    as 26/256 = 0.1015625), 0 for 0. Keras's dropout (the fallback) applies
    `rate` itself."""
    return _threshold(rate) / 256 if rate > 0 else 0.0


def hashed_dropout(inputs, rate: float, seed):
    """Dropout of `inputs` (static shape, element count a multiple of 4) with
    the mask drawn from `hashed_bits` keyed on `seed` (2 int32 words): the same
    mask on every backend for the same seed. See `Dropout`."""
    shape = tuple(inputs.shape)
    threshold = _threshold(rate)
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
