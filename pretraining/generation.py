"""Text generation for causal-LM and UniLM seq2seq models, with a fixed-shape
key/value cache, written in `keras.ops`: it runs on every Keras backend.

The context (the prompt, or `[CLS] source [SEP]`) goes through the encoder's
own layers in one pass that fills every layer's key/value cache; then each
new token is one position wide: its keys and values are written into the
cache at its position (a one-hot update: no dynamic shapes) and it attends to
the cached positions it may see. Greedy, sampling (temperature, top-k, top-p)
and beam search share that step. The decoding loop is `keras.ops.fori_loop`,
compiled whole by the backend: a `tf.function` on TensorFlow, `jax.jit` on
JAX (eager on PyTorch, without autograd).

Sampling draws Gumbel noise from `layers.hashed_bits` keyed on
`(seed, step)`: the same seed picks the same tokens on every backend.
"""

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from pretraining import attention_masks
from pretraining.layers import hashed_bits

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """How to pick tokens.

    Args:
        method: 'greedy', 'sample' or 'beam'.
        max_new_tokens: int. Tokens generated after the context.
        temperature: float. Sampling temperature.
        top_k: int. Sample among the k most likely tokens (0: all).
        top_p: float. Sample among the smallest set of tokens whose
            probability reaches p (1.0: all).
        num_beams: int. Beam width for 'beam'.
        min_new_tokens: int. `sep_id` cannot end a sequence before this many
            tokens (a barely trained model often ends at once).
        seed: int. Seed of the sampling noise (stateless: same seed, same text).
    """

    method: str = "greedy"
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    min_new_tokens: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("greedy", "sample", "beam"):
            raise ValueError("`method` must be 'greedy', 'sample' or 'beam'. "
                             f"Received: method={self.method!r}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError("`min_new_tokens` must be in [0, max_new_tokens]. Received: "
                             f"min_new_tokens={self.min_new_tokens}, "
                             f"max_new_tokens={self.max_new_tokens}")
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.top_k < 0:
            raise ValueError("`max_new_tokens` and `num_beams` must be >= 1, `top_k` >= 0. "
                             f"Received: max_new_tokens={self.max_new_tokens}, "
                             f"num_beams={self.num_beams}, top_k={self.top_k}")
        if not 0.0 < self.top_p <= 1.0 or self.temperature <= 0:
            raise ValueError("`top_p` must be in (0, 1] and `temperature` > 0. Received: "
                             f"top_p={self.top_p}, temperature={self.temperature}")


def _compiled(fn):
    """`fn(ids, mask, segments, options)` compiled by the backend (options static)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.function(fn)
    if backend == "jax":
        import jax
        return jax.jit(fn, static_argnums=3)
    return fn


def _no_grad():
    """Inference only: no autograd graph on PyTorch."""
    if keras.backend.backend() == "torch":
        import torch
        return torch.no_grad()
    import contextlib
    return contextlib.nullcontext()


def _at_step(history, step, token):
    """`history` (rows, steps) with column `step` set to `token` (rows,)."""
    column = ops.arange(ops.shape(history)[1], dtype="int32")[None] == step
    return ops.where(column, token[:, None], history)


class Generator:
    """Generates from a `BertPretrainer` of task `lm` or `seq2seq`.

    Args:
        model: `BertPretrainer` (its encoder's `attention_mask_type` must be
            'causal' or 'unilm').
        max_length: int. Context + generated tokens (≤ max_position_embeddings).
        sep_id: int. Stops a sequence once generated.
    """

    def __init__(self, model, max_length: int, sep_id: int):
        config = model.encoder.config
        if config.attention_mask_type not in ("causal", "unilm"):
            raise ValueError("Generation needs a model trained with attention_mask_type "
                             "'causal' (lm) or 'unilm' (seq2seq). Received: "
                             f"attention_mask_type={config.attention_mask_type!r}")
        if config.condition_size:
            raise ValueError("Generation does not support Conditional LayerNorm models yet "
                             f"(condition_size={config.condition_size}).")
        if max_length > config.max_position_embeddings:
            raise ValueError(f"`max_length` must be <= max_position_embeddings="
                             f"{config.max_position_embeddings}. Received: {max_length}")
        self.model, self.config = model, config
        self.max_length, self.sep_id = max_length, sep_id
        self.target_segment = 1 if config.attention_mask_type == "unilm" else 0
        self._sample_fn, self._beam_fn = _compiled(self._sample), _compiled(self._beam)

    # ------------------------------------------------------------ the model
    def _layers(self, x, positions, visible, caches):
        """Runs the encoder blocks on `x` (batch, T, hidden) at `positions`
        (batch, T), writing keys/values into `caches` and attending to the
        cached positions `visible` (batch, T, L) allows. Returns (x, caches)."""
        encoder, cfg = self.model.encoder, self.config
        heads, size = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        batch = ops.shape(x)[0]
        write = ops.one_hot(positions, self.max_length)  # (batch, T, L)
        keep = 1.0 - ops.max(write, axis=1)[:, None, :, None]  # (batch, 1, L, 1)
        bias = ops.where(visible, 0.0, -10000.0)[:, None]  # (batch, 1, T, L)

        def split(t):  # (batch, T, hidden) → (batch, heads, T, size)
            return ops.transpose(ops.reshape(t, (batch, -1, heads, size)), (0, 2, 1, 3))

        new_caches = []
        for layer, (k_cache, v_cache) in zip(encoder.transformer_layers, caches):
            att = layer.attention
            q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
            # Scatter the T new positions into the (batch, heads, L, size) caches.
            k_cache = k_cache * keep + ops.einsum("btl,bhtd->bhld", write, k)
            v_cache = v_cache * keep + ops.einsum("btl,bhtd->bhld", write, v)
            scores = ops.matmul(q, ops.transpose(k_cache, (0, 1, 3, 2))) / math.sqrt(size)
            context = ops.matmul(ops.softmax(scores + bias, axis=-1), v_cache)
            context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)),
                                  (batch, -1, cfg.hidden_size))
            x = layer.attention_layer_norm(x + layer.attention_output(context))
            x = layer.output_layer_norm(x + layer.output_dense(layer.intermediate(x)))
            new_caches.append((k_cache, v_cache))
        return x, new_caches

    def _embed(self, ids, segments, positions):
        emb = self.model.encoder.embeddings
        x = (ops.take(emb.word_embeddings.embeddings, ids, axis=0)
             + ops.take(emb.token_type_embeddings.embeddings, segments, axis=0)
             + ops.take(emb.position_embeddings.embeddings, positions, axis=0))
        return emb.layer_norm(x)

    def _logits(self, x):
        """Next-token logits from hidden states (batch, hidden)."""
        embeddings = self.model.encoder.embeddings.word_embeddings.embeddings
        positions = ops.zeros((ops.shape(x)[0], 1), "int32")
        return self.model.masked_lm(x[:, None], positions, embeddings)[:, 0]

    def context_logits(self, ids, mask, segments):
        """Caches for the context and the logits of the token after it."""
        ids, mask, segments = (ops.cast(t, "int32") for t in (ids, mask, segments))
        batch, cfg = ops.shape(ids)[0], self.config
        positions = ops.broadcast_to(ops.arange(self.max_length, dtype="int32")[None],
                                     ops.shape(ids))
        visible = attention_masks.attention_mask(
            cfg.attention_mask_type, mask, segments, cfg.prefix_length)
        shape = (batch, cfg.num_attention_heads, self.max_length,
                 cfg.hidden_size // cfg.num_attention_heads)
        caches = [(ops.zeros(shape), ops.zeros(shape)) for _ in range(cfg.num_hidden_layers)]
        x, caches = self._layers(self._embed(ids, segments, positions), positions, visible,
                                 caches)
        last = ops.sum(mask, axis=1) - 1  # position of the last context token
        index = ops.broadcast_to(last[:, None, None], (batch, 1, cfg.hidden_size))
        return self._logits(ops.take_along_axis(x, index, axis=1)[:, 0]), caches

    def step_logits(self, token, position, valid, caches):
        """Feeds one token per sequence at `position`; returns its next-token
        logits and the updated caches."""
        token, position = ops.cast(token, "int32"), ops.cast(position, "int32")
        segments = ops.full(ops.shape(token), self.target_segment, dtype="int32")
        x = self._embed(token[:, None], segments[:, None], position[:, None])
        earlier = ops.arange(self.max_length, dtype="int32")[None] <= position[:, None]
        visible = ops.logical_and(ops.cast(valid, "bool"), earlier)[:, None]  # (batch, 1, L)
        x, caches = self._layers(x, position[:, None], visible, caches)
        return self._logits(x[:, 0]), caches

    # ------------------------------------------------------------ decoding
    def generate(self, ids, mask, segments, options: GenerationConfig):
        """Generates `options.max_new_tokens` after each context.

        Args:
            ids, mask, segments: int32 `(batch, max_length)`, the context
                left-aligned and zero-padded.

        Returns:
            int32 NumPy `(batch, max_new_tokens)`: generated ids, `sep_id`
            then 0s after a sequence ended.
        """
        ids, mask, segments = (np.asarray(ops.convert_to_numpy(a), "int32")
                               for a in (ids, mask, segments))
        longest = int(mask.sum(axis=1).max())
        if longest + options.max_new_tokens > self.max_length:
            raise ValueError(f"The context ({longest} tokens) plus "
                             f"max_new_tokens={options.max_new_tokens} exceeds "
                             f"max_length={self.max_length}.")
        args = [ops.convert_to_tensor(a, "int32") for a in (ids, mask, segments)]
        decode = self._beam_fn if options.method == "beam" else self._sample_fn
        with _no_grad():
            out = decode(*args, options)
        return np.asarray(ops.convert_to_numpy(out), "int32")

    def _forbid_end(self, logits, options, step):
        """No `sep_id` before `options.min_new_tokens` tokens."""
        early = step < options.min_new_tokens
        is_sep = (ops.arange(ops.shape(logits)[-1], dtype="int32") == self.sep_id)[None]
        return ops.where(ops.logical_and(early, is_sep), NEG_INF, logits)

    def _pick(self, logits, options, step):
        if options.method == "greedy":
            return ops.cast(ops.argmax(logits, axis=-1), "int32")
        logits = logits / options.temperature
        if options.top_k:
            kth = ops.top_k(logits, options.top_k)[0][:, -1:]
            logits = ops.where(logits < kth, NEG_INF, logits)
        if options.top_p < 1.0:
            ordered = -ops.sort(-logits, axis=-1)  # descending
            probs = ops.softmax(ordered, axis=-1)
            before = ops.cumsum(probs, axis=-1) - probs  # probability mass of the better ones
            cutoff = ops.min(ops.where(before < options.top_p, ordered, 1e9), axis=-1)
            logits = ops.where(logits < cutoff[:, None], NEG_INF, logits)
        # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits).
        rows, vocab = logits.shape
        seed = ops.stack([ops.convert_to_tensor(options.seed, "int32"), ops.cast(step, "int32")])
        bits = ops.reshape(hashed_bits(rows * vocab, seed), (rows, vocab))
        uniform = (ops.cast(ops.right_shift(bits, 8), "float32") + 0.5) * 2.0 ** -24  # (0, 1)
        return ops.cast(ops.argmax(logits - ops.log(-ops.log(uniform)), axis=-1), "int32")

    def _sample(self, ids, mask, segments, options):
        logits, caches = self.context_logits(ids, mask, segments)
        batch = ids.shape[0]
        state = (logits, caches, ops.sum(mask, axis=1), mask, ops.zeros((batch,), "bool"),
                 ops.zeros((batch, options.max_new_tokens), "int32"))

        def step_fn(step, state):
            logits, caches, position, valid, done, out = state
            logits = self._forbid_end(logits, options, step)
            token = ops.where(done, 0, self._pick(logits, options, step))
            out = _at_step(out, step, token)
            done = ops.logical_or(done, ops.equal(token, self.sep_id))
            valid = ops.maximum(valid, ops.one_hot(position, self.max_length, dtype="int32"))
            logits, caches = self.step_logits(token, position, valid, caches)
            position = ops.minimum(position + 1, self.max_length - 1)
            return logits, caches, position, valid, done, out

        return ops.fori_loop(0, options.max_new_tokens, step_fn, state)[-1]

    def _beam(self, ids, mask, segments, options):
        beams = options.num_beams
        batch = ids.shape[0]  # static: every loop variable keeps its shape
        tile = lambda t: ops.repeat(t, beams, axis=0)  # noqa: E731  (batch·beams, ...)
        logits, caches = self.context_logits(tile(ids), tile(mask), tile(segments))
        vocab = logits.shape[-1]
        # Only the first beam of each sequence is live at the start.
        first = ops.concatenate([ops.zeros((1,)), ops.full((beams - 1,), NEG_INF)], axis=0)
        state = (logits, caches, ops.sum(tile(mask), axis=1), tile(mask),
                 ops.zeros((batch * beams,), "bool"), ops.tile(first, [batch]),
                 ops.zeros((batch * beams, options.max_new_tokens), "int32"))
        offsets = ops.arange(batch, dtype="int32")[:, None] * beams
        # A finished beam only extends with padding (id 0) at no cost.
        finished = ops.where(ops.arange(vocab, dtype="int32")[None] == 0, 0.0, NEG_INF)

        def step_fn(step, state):
            logits, caches, position, valid, done, scores, history = state
            log_probs = self._forbid_end(ops.log_softmax(logits, axis=-1), options, step)
            log_probs = ops.where(done[:, None], finished, log_probs)
            total = ops.reshape(scores[:, None] + log_probs, (batch, beams * vocab))
            scores, flat = ops.top_k(total, beams)  # (batch, beams)
            flat = ops.cast(flat, "int32")
            parent = ops.reshape(flat // vocab + offsets, (-1,))
            token = ops.reshape(flat % vocab, (-1,))
            scores = ops.reshape(scores, (-1,))
            caches = [(ops.take(k, parent, axis=0), ops.take(v, parent, axis=0))
                      for k, v in caches]
            history = _at_step(ops.take(history, parent, axis=0), step, token)
            done = ops.logical_or(ops.take(done, parent, axis=0), ops.equal(token, self.sep_id))
            valid = ops.maximum(ops.take(valid, parent, axis=0),
                                ops.one_hot(position, self.max_length, dtype="int32"))
            logits, caches = self.step_logits(token, position, valid, caches)
            position = ops.minimum(position + 1, self.max_length - 1)
            return logits, caches, position, valid, done, scores, history

        _, _, _, _, _, scores, history = ops.fori_loop(0, options.max_new_tokens, step_fn,
                                                       state)
        best = ops.cast(ops.argmax(ops.reshape(scores, (batch, beams)), axis=1), "int32")
        history = ops.reshape(history, (batch, beams, options.max_new_tokens))
        index = ops.broadcast_to(best[:, None, None], (batch, 1, options.max_new_tokens))
        return ops.take_along_axis(history, index, axis=1)[:, 0]
