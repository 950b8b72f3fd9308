"""Text generation for causal-LM and UniLM seq2seq models, with a fixed-shape
key/value cache, in one `tf.function`.

The context (the prompt, or `[CLS] source [SEP]`) goes through the encoder's
own layers in one pass that fills every layer's key/value cache; then each
new token is one position wide: its keys and values are written into the
cache at its position (a one-hot update: no dynamic shapes) and it attends to
the cached positions it may see. Greedy, sampling (temperature, top-k, top-p)
and beam search share that step.
"""

import dataclasses
import math

import tensorflow as tf

from pretraining import attention_masks

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
        seed: int. Seed of the sampling RNG (stateless: same seed, same text).
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

    # ------------------------------------------------------------ the model
    def _layers(self, x, positions, visible, caches):
        """Runs the encoder blocks on `x` (batch, T, hidden) at `positions`
        (batch, T), writing keys/values into `caches` and attending to the
        cached positions `visible` (batch, T, L) allows. Returns (x, caches)."""
        encoder, cfg = self.model.encoder, self.config
        heads, size = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        write = tf.one_hot(positions, self.max_length)  # (batch, T, L)
        bias = tf.where(visible, 0.0, -10000.0)[:, None]  # (batch, 1, T, L)
        new_caches = []
        for layer, (k_cache, v_cache) in zip(encoder.transformer_layers, caches):
            att = layer.attention

            def split(t):  # (batch, T, hidden) → (batch, heads, T, size)
                return tf.transpose(tf.reshape(t, [tf.shape(t)[0], -1, heads, size]),
                                    [0, 2, 1, 3])

            q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
            # Scatter the T new positions into the (batch, heads, L, size) caches.
            into = tf.einsum("btl,bhtd->bhld", write, k)
            keep = 1.0 - tf.reduce_max(write, axis=1)[:, None, :, None]
            k_cache = k_cache * keep + into
            v_cache = v_cache * keep + tf.einsum("btl,bhtd->bhld", write, v)
            scores = tf.matmul(q, k_cache, transpose_b=True) / math.sqrt(size) + bias
            context = tf.matmul(tf.nn.softmax(scores, axis=-1), v_cache)
            context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]),
                                 [tf.shape(x)[0], -1, cfg.hidden_size])
            x = layer.attention_layer_norm(x + layer.attention_output(context))
            x = layer.output_layer_norm(x + layer.output_dense(layer.intermediate(x)))
            new_caches.append((k_cache, v_cache))
        return x, new_caches

    def _embed(self, ids, segments, positions):
        emb = self.model.encoder.embeddings
        x = (tf.gather(emb.word_embeddings.embeddings, ids)
             + tf.gather(emb.token_type_embeddings.embeddings, segments)
             + tf.gather(emb.position_embeddings.embeddings, positions))
        return emb.layer_norm(x)

    def _logits(self, x):
        """Next-token logits from hidden states (batch, hidden)."""
        embeddings = self.model.encoder.embeddings.word_embeddings.embeddings
        positions = tf.zeros([tf.shape(x)[0], 1], tf.int32)
        return self.model.masked_lm(x[:, None], positions, embeddings)[:, 0]

    def context_logits(self, ids, mask, segments):
        """Caches for the context and the logits of the token after it."""
        ids, mask, segments = (tf.cast(t, tf.int32) for t in (ids, mask, segments))
        batch = tf.shape(ids)[0]
        positions = tf.broadcast_to(tf.range(self.max_length)[None], tf.shape(ids))
        visible = attention_masks.attention_mask(
            self.config.attention_mask_type, mask, segments, self.config.prefix_length)
        cfg = self.config
        shape = [batch, cfg.num_attention_heads, self.max_length,
                 cfg.hidden_size // cfg.num_attention_heads]
        caches = [(tf.zeros(shape), tf.zeros(shape)) for _ in range(cfg.num_hidden_layers)]
        x, caches = self._layers(self._embed(ids, segments, positions), positions, visible,
                                 caches)
        last = tf.reduce_sum(mask, axis=1) - 1  # position of the last context token
        return self._logits(tf.gather(x, last, batch_dims=1)), caches

    def step_logits(self, token, position, valid, caches):
        """Feeds one token per sequence at `position`; returns its next-token
        logits and the updated caches."""
        token, position = tf.cast(token, tf.int32), tf.cast(position, tf.int32)
        segments = tf.fill(tf.shape(token), self.target_segment)
        x = self._embed(token[:, None], segments[:, None], position[:, None])
        earlier = tf.range(self.max_length)[None] <= position[:, None]
        visible = tf.logical_and(tf.cast(valid, tf.bool), earlier)[:, None]  # (batch, 1, L)
        x, caches = self._layers(x, position[:, None], visible, caches)
        return self._logits(x[:, 0]), caches

    # ------------------------------------------------------------ decoding
    def generate(self, ids, mask, segments, options: GenerationConfig):
        """Generates `options.max_new_tokens` after each context.

        Args:
            ids, mask, segments: int32 `(batch, max_length)`, the context
                left-aligned and zero-padded.

        Returns:
            int32 `(batch, max_new_tokens)`: generated ids, `sep_id` then 0s
            after a sequence ended.
        """
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        if int(tf.reduce_max(lengths)) + options.max_new_tokens > self.max_length:
            raise ValueError(f"The context ({int(tf.reduce_max(lengths))} tokens) plus "
                             f"max_new_tokens={options.max_new_tokens} exceeds "
                             f"max_length={self.max_length}.")
        args = [tf.constant(a, tf.int32) for a in (ids, mask, segments)]
        if options.method == "beam":
            return self._beam(*args, options).numpy()
        return self._sample(*args, options).numpy()

    def _forbid_end(self, logits, options, step):
        """No `sep_id` before `options.min_new_tokens` tokens."""
        early = step < options.min_new_tokens
        is_sep = tf.equal(tf.range(tf.shape(logits)[-1]), self.sep_id)[None]
        return tf.where(tf.logical_and(early, is_sep), NEG_INF, logits)

    def _pick(self, logits, options, step):
        if options.method == "greedy":
            return tf.argmax(logits, axis=-1, output_type=tf.int32)
        logits = logits / options.temperature
        if options.top_k:
            kth = tf.math.top_k(logits, options.top_k).values[:, -1:]
            logits = tf.where(logits < kth, NEG_INF, logits)
        if options.top_p < 1.0:
            ordered = tf.sort(logits, direction="DESCENDING", axis=-1)
            cumulative = tf.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
            cutoff = tf.reduce_min(tf.where(cumulative < options.top_p, ordered, 1e9), axis=-1)
            logits = tf.where(logits < cutoff[:, None], NEG_INF, logits)
        seed = tf.stack([tf.constant(options.seed, tf.int32), step])
        return tf.cast(tf.random.stateless_categorical(logits, 1, seed)[:, 0], tf.int32)

    @tf.function
    def _sample(self, ids, mask, segments, options):
        logits, caches = self.context_logits(ids, mask, segments)
        position = tf.reduce_sum(mask, axis=1)
        valid, done = mask, tf.zeros_like(position, tf.bool)
        out = tf.TensorArray(tf.int32, size=options.max_new_tokens)
        for step in tf.range(options.max_new_tokens):
            logits = self._forbid_end(logits, options, step)
            token = tf.where(done, 0, self._pick(logits, options, step))
            out = out.write(step, token)
            done = tf.logical_or(done, tf.equal(token, self.sep_id))
            valid = tf.maximum(valid, tf.one_hot(position, self.max_length, dtype=tf.int32))
            logits, caches = self.step_logits(token, position, valid, caches)
            position = tf.minimum(position + 1, self.max_length - 1)
        return tf.transpose(out.stack())

    @tf.function
    def _beam(self, ids, mask, segments, options):
        beams = options.num_beams
        batch = ids.shape[0]  # static: every loop variable keeps its shape
        tile = lambda t: tf.repeat(t, beams, axis=0)  # (batch·beams, ...)
        logits, caches = self.context_logits(tile(ids), tile(mask), tile(segments))
        position, valid = tf.reduce_sum(tile(mask), axis=1), tile(mask)
        # Only the first beam of each sequence is live at the start.
        scores = tf.tile(tf.concat([[0.0], tf.fill([beams - 1], NEG_INF)], 0), [batch])
        done = tf.zeros([batch * beams], tf.bool)
        history = tf.zeros([batch * beams, options.max_new_tokens], tf.int32)
        vocab = tf.shape(logits)[-1]
        for step in tf.range(options.max_new_tokens):
            log_probs = self._forbid_end(tf.nn.log_softmax(logits), options, step)
            # A finished beam only extends with padding (id 0) at no cost.
            finished = tf.where(tf.range(vocab)[None] == 0, 0.0, NEG_INF)
            log_probs = tf.where(done[:, None], finished, log_probs)
            total = tf.reshape(scores[:, None] + log_probs, [batch, beams * vocab])
            scores, flat = tf.math.top_k(total, beams)  # (batch, beams)
            parent = flat // vocab + tf.range(batch)[:, None] * beams
            token = tf.reshape(flat % vocab, [-1])
            parent, scores = tf.reshape(parent, [-1]), tf.reshape(scores, [-1])
            caches = [(tf.gather(k, parent), tf.gather(v, parent)) for k, v in caches]
            history = tf.tensor_scatter_nd_update(
                tf.gather(history, parent),
                tf.stack([tf.range(batch * beams), tf.fill([batch * beams], step)], 1), token)
            done = tf.logical_or(tf.gather(done, parent), tf.equal(token, self.sep_id))
            valid = tf.maximum(tf.gather(valid, parent),
                               tf.one_hot(position, self.max_length, dtype=tf.int32))
            logits, caches = self.step_logits(token, position, valid, caches)
            position = tf.minimum(position + 1, self.max_length - 1)
        best = tf.argmax(tf.reshape(scores, [batch, beams]), axis=1, output_type=tf.int32)
        return tf.gather(tf.reshape(history, [batch, beams, -1]), best, batch_dims=1)
