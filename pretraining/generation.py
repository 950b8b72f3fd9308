"""Text generation (greedy, sampling, beam search) for causal-LM, prefix-LM and
UniLM seq2seq models, Conditional LayerNorm ones included, written in
`keras.ops`: it runs on every Keras backend.

The model runs through its own layers with a fixed-shape key/value cache
(`BertEncoder.call_with_cache`): the context (the prompt, or
`[CLS] source [SEP]`) in one pass that fills every layer's cache, then one
position per new token. This module only picks tokens. The decoding loop is
`keras.ops.fori_loop`, compiled whole by the backend: a `tf.function` on
TensorFlow, `jax.jit` on JAX (eager on PyTorch, without autograd).

Sampling draws Gumbel noise from `dropout.hashed_bits` keyed on
`(seed, step)`: the same seed picks the same tokens on every backend."""

import dataclasses

import keras
import numpy as np
from keras import ops

from pretraining.config_base import (Config, require_choice, require_non_negative,
                                     require_positive)
from pretraining.dropout import hashed_bits

NEG_INF = -1e9
METHODS = ("greedy", "sample", "beam")
GENERATIVE_MASKS = ("causal", "unilm", "prefix")


@dataclasses.dataclass(frozen=True)
class GenerationConfig(Config):
    """How to pick tokens.

    Args:
        method: str. 'greedy', 'sample' or 'beam'. Defaults to 'greedy'.
        max_new_tokens: int. Tokens generated after the context. Defaults to 32.
        temperature: float. Sampling temperature. Defaults to 1.0.
        top_k: int. Sample among the k most likely tokens (0: all). Defaults to 0.
        top_p: float. Sample among the smallest set of tokens whose
            probability reaches p (1.0: all). Defaults to 1.0.
        num_beams: int. Beam width for 'beam'. Defaults to 4.
        min_new_tokens: int. `sep_id` cannot end a sequence before this many
            tokens (a barely trained model often ends at once). Defaults to 1.
        seed: int. Seed of the sampling noise (stateless: same seed, same
            text). Defaults to 0.
    """

    _section = "generation"

    method: str = "greedy"
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    min_new_tokens: int = 1
    seed: int = 0

    def __post_init__(self):
        require_choice("method", self.method, METHODS)
        require_positive(self, "max_new_tokens", "num_beams", "temperature")
        require_non_negative(self, "top_k", "min_new_tokens")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("`min_new_tokens` must be <= max_new_tokens. Received: "
                             f"min_new_tokens={self.min_new_tokens}, "
                             f"max_new_tokens={self.max_new_tokens}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"`top_p` must be in (0, 1]. Received: top_p={self.top_p}")


def _compiled(fn):
    """`fn(ids, mask, segments, condition, options)` compiled by the backend
    (options static)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.function(fn)
    if backend == "jax":
        import jax
        return jax.jit(fn, static_argnums=4)
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

    The model runs through its own layers (`BertEncoder.call_with_cache`,
    then the tied masked-LM head); this class only picks tokens.

    Args:
        model: `BertPretrainer` whose encoder's `attention_mask_type` is
            'causal', 'unilm' or 'prefix' (a bidirectional encoder cannot
            generate: every position sees the token it would predict).
        max_length: int. Context + generated tokens (≤ max_position_embeddings).
        sep_id: int. Stops a sequence once generated.
    """

    def __init__(self, model, max_length: int, sep_id: int):
        config = model.encoder.config
        if config.attention_mask_type not in GENERATIVE_MASKS:
            raise ValueError("Generation needs a model trained with attention_mask_type "
                             "'causal' (lm), 'unilm' (seq2seq) or 'prefix'. Received: "
                             f"attention_mask_type={config.attention_mask_type!r}")
        if max_length > config.max_position_embeddings:
            raise ValueError(f"`max_length` must be <= max_position_embeddings="
                             f"{config.max_position_embeddings}. Received: {max_length}")
        self.model, self.config = model, config
        self.max_length, self.sep_id = max_length, sep_id
        self.target_segment = 1 if config.attention_mask_type == "unilm" else 0
        self._sample_fn, self._beam_fn = _compiled(self._sample), _compiled(self._beam)

    # ------------------------------------------------------------ the model
    def _logits(self, sequence, positions):
        """Next-token logits `(batch, vocab)` from the hidden states
        `(batch, T, hidden)` at `positions` `(batch,)` (the tied MLM head)."""
        return self.model.masked_lm(sequence, positions[:, None])[:, 0]

    def _inputs(self, ids, mask, segments, condition):
        inputs = {"input_ids": ids, "input_mask": mask, "segment_ids": segments}
        if condition is not None:
            inputs["condition"] = condition
        return inputs

    def context_logits(self, ids, mask, segments, condition=None):
        """The cache filled by the context and the logits of the token after it.

        Args:
            ids, mask, segments: int `(batch, max_length)`, the context
                left-aligned and zero-padded.
            condition: float `(batch, condition_size)` (int class ids
                `(batch, 1)` with `condition_num_classes`) for a Conditional
                LayerNorm model, else None.
        """
        ids, mask, segments = (ops.cast(t, "int32") for t in (ids, mask, segments))
        batch, encoder = ops.shape(ids)[0], self.model.encoder
        x, cache = encoder.call_with_cache(
            self._inputs(ids, mask, segments, condition),
            encoder.empty_cache(batch, self.max_length), ops.zeros((batch,), "int32"))
        last = ops.sum(mask, axis=1) - 1  # position of the last context token
        return self._logits(x, last), cache

    def step_logits(self, token, position, mask, segments, cache, condition=None):
        """Feeds one token per sequence at `position`; returns its next-token
        logits and the updated cache. `mask` and `segments` `(batch, max_length)`
        cover the sequence so far, this token included."""
        token, position = ops.cast(token, "int32"), ops.cast(position, "int32")
        inputs = self._inputs(token[:, None], mask, segments, condition)
        x, cache = self.model.encoder.call_with_cache(inputs, cache, position)
        return self._logits(x, ops.zeros_like(position)), cache

    def _extend(self, token, position, mask, segments, cache, condition):
        """Writes `token` at `position` into the sequence (mask, segments) and
        feeds it: the next logits and the new decoding state."""
        at = ops.one_hot(position, self.max_length, dtype="int32")  # (batch, max_length)
        mask = ops.maximum(ops.cast(mask, "int32"), at)
        segments = ops.cast(ops.where(at > 0, self.target_segment, segments), "int32")
        logits, cache = self.step_logits(token, position, mask, segments, cache, condition)
        return logits, cache, ops.minimum(position + 1, self.max_length - 1), mask, segments

    # ------------------------------------------------------------ decoding
    def generate(self, ids, mask, segments, options: GenerationConfig, condition=None):
        """Generates `options.max_new_tokens` after each context.

        Args:
            ids, mask, segments: int32 `(batch, max_length)`, the context
                left-aligned and zero-padded.
            options: `GenerationConfig`.
            condition: float `(batch, condition_size)`, or int class ids
                `(batch, 1)` for a model with `condition_num_classes`; required
                by (and only by) a Conditional LayerNorm model.

        Returns:
            int32 NumPy `(batch, max_new_tokens)`: generated ids, `sep_id`
            then 0s after a sequence ended.
        """
        ids, mask, segments = (np.asarray(ops.convert_to_numpy(a), "int32")
                               for a in (ids, mask, segments))
        lengths = mask.sum(axis=1)
        if lengths.max() + options.max_new_tokens > self.max_length:
            raise ValueError(f"The context ({lengths.max()} tokens) plus "
                             f"max_new_tokens={options.max_new_tokens} exceeds "
                             f"max_length={self.max_length}.")
        prefix = self.config.prefix_length
        if self.config.attention_mask_type == "prefix" and lengths.min() < prefix:
            # Tokens generated inside the prefix would change the context's
            # own (bidirectional) outputs, which the cache holds fixed.
            raise ValueError("A prefix-LM context must cover the prefix: every context needs "
                             f">= prefix_length={prefix} tokens. Received: a context of "
                             f"{lengths.min()}.")
        args = [ops.convert_to_tensor(a, "int32") for a in (ids, mask, segments)]
        args.append(self._condition(condition, len(ids)))
        decode = self._beam_fn if options.method == "beam" else self._sample_fn
        with _no_grad():
            out = decode(*args, options)
        return np.asarray(ops.convert_to_numpy(out), "int32")

    def _condition(self, condition, batch):
        size = self.config.condition_size
        if not size:
            if condition is not None:
                raise ValueError("`condition` is only for a model with condition_size > 0; "
                                 "this model has condition_size=0: pass condition=None.")
            return None
        shape = None if condition is None else tuple(np.shape(condition))
        classes = self.config.condition_num_classes
        if classes:  # class ids (batch, 1)
            if shape != (batch, 1):
                raise ValueError(f"The model has condition_num_classes={classes}: `condition` "
                                 f"must be int class ids of shape ({batch}, 1). "
                                 f"Received: shape={shape}")
            ids = np.asarray(condition, "int64")
            if ids.min() < 0 or ids.max() >= classes:
                raise ValueError(f"`condition` class ids must be in [0, {classes}). "
                                 f"Received: {sorted(set(ids.ravel().tolist()))}")
            return ops.convert_to_tensor(ids.astype("int32"))
        if shape != (batch, size):
            raise ValueError(f"The model has condition_size={size}: `condition` must be a "
                             f"float array of shape ({batch}, {size}). Received: shape={shape}")
        return ops.convert_to_tensor(np.asarray(condition, "float32"))

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

    def _sample(self, ids, mask, segments, condition, options):
        logits, cache = self.context_logits(ids, mask, segments, condition)
        batch = ids.shape[0]
        state = (logits, cache, ops.sum(mask, axis=1), mask, segments,
                 ops.zeros((batch,), "bool"), ops.zeros((batch, options.max_new_tokens), "int32"))

        def step_fn(step, state):
            logits, cache, position, mask, segments, done, out = state
            logits = self._forbid_end(logits, options, step)
            token = ops.where(done, 0, self._pick(logits, options, step))
            out = _at_step(out, step, token)
            done = ops.logical_or(done, ops.equal(token, self.sep_id))
            logits, cache, position, mask, segments = self._extend(
                token, position, mask, segments, cache, condition)
            return logits, cache, position, mask, segments, done, out

        return ops.fori_loop(0, options.max_new_tokens, step_fn, state)[-1]

    def _beam(self, ids, mask, segments, condition, options):
        beams = options.num_beams
        batch = ids.shape[0]  # static: every loop variable keeps its shape
        tile = lambda t: None if t is None else ops.repeat(t, beams, axis=0)  # noqa: E731
        ids, mask, segments, condition = (tile(t) for t in (ids, mask, segments, condition))
        logits, cache = self.context_logits(ids, mask, segments, condition)
        vocab = logits.shape[-1]
        # Only the first beam of each sequence is live at the start.
        first = ops.concatenate([ops.zeros((1,)), ops.full((beams - 1,), NEG_INF)], axis=0)
        state = (logits, cache, ops.sum(mask, axis=1), mask, segments,
                 ops.zeros((batch * beams,), "bool"), ops.tile(first, [batch]),
                 ops.zeros((batch * beams, options.max_new_tokens), "int32"))
        offsets = ops.arange(batch, dtype="int32")[:, None] * beams
        # A finished beam only extends with padding (id 0) at no cost.
        finished = ops.where(ops.arange(vocab, dtype="int32")[None] == 0, 0.0, NEG_INF)

        def step_fn(step, state):
            logits, cache, position, mask, segments, done, scores, history = state
            log_probs = self._forbid_end(ops.log_softmax(logits, axis=-1), options, step)
            log_probs = ops.where(done[:, None], finished, log_probs)
            total = ops.reshape(scores[:, None] + log_probs, (batch, beams * vocab))
            scores, flat = ops.top_k(total, beams)  # (batch, beams)
            flat = ops.cast(flat, "int32")
            parent = ops.reshape(flat // vocab + offsets, (-1,))
            token = ops.reshape(flat % vocab, (-1,))
            scores = ops.reshape(scores, (-1,))
            cache, history, done, mask, segments = (
                ops.take(t, parent, axis=0) for t in (cache, history, done, mask, segments))
            history = _at_step(history, step, token)
            done = ops.logical_or(done, ops.equal(token, self.sep_id))
            logits, cache, position, mask, segments = self._extend(
                token, position, mask, segments, cache, condition)
            return logits, cache, position, mask, segments, done, scores, history

        state = ops.fori_loop(0, options.max_new_tokens, step_fn, state)
        scores, history = state[-2:]
        best = ops.cast(ops.argmax(ops.reshape(scores, (batch, beams)), axis=1), "int32")
        history = ops.reshape(history, (batch, beams, options.max_new_tokens))
        index = ops.broadcast_to(best[:, None, None], (batch, 1, options.max_new_tokens))
        return ops.take_along_axis(history, index, axis=1)[:, 0]
