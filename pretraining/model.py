"""The BERT encoder: embeddings, `num_hidden_layers` transformer blocks, pooler;
`initialize_weights` draws its (and its heads') initial weights from their
own seed stream."""

import hashlib

import keras
from keras import ops

from pretraining import attention_masks
from pretraining.config import BertConfig
from pretraining.dropout import effective_rate, fold_key, model_key
from pretraining.layers import BertEmbeddings, TransformerLayer, initializer, layer_norm


@keras.saving.register_keras_serializable(package="pretraining")
class BertEncoder(keras.Model):
    """Google's BERT encoder as a Keras 3 model.

    Variables are created at construction under the model's name, so their
    paths (`bert/layer_0/attention/query/kernel`, ...) do not depend on what
    wraps the encoder later.

    Args:
        config: `BertConfig` or a dict of its fields. `attention_mask_type`
            selects which tokens see which (see `attention_masks`);
            `condition_size` > 0 turns on Conditional LayerNorm;
            `condition_num_classes` > 0 makes the condition a class id
            looked up in a learned embedding (`condition_embeddings`);
            `layer_norm_position="pre"` adds a LayerNorm after the last
            block (`final_layer_norm`, conditional as the others), which
            `sequence_output`, the pooler and the heads read.
        name: str. Prefix of every variable path. Defaults to `"bert"`.

    Call arguments:
        inputs: dict with int tensors `input_ids`, `segment_ids`, `input_mask`,
            each `(batch, seq)`, and a `condition` when Conditional LayerNorm
            is on: float `(batch, condition_size)`, or int class ids
            `(batch, 1)` with `condition_num_classes`.
        training: bool. Whether dropout is applied. In training, `inputs`
            may also carry the dropout key: `dropout_seed` (2 int words,
            the step's) and `example_index` `(batch,)` (each row's global
            example index), so that masks do not depend on how the batch
            was split (`dropout.Dropout`); without them masks come from the
            dropout layers' seed generators.
        output_positions: int tensor `(batch, R)`, or None. The positions
            whose `sequence_output` is wanted (a masked-LM head's). The last
            block then computes only those rows and row 0 (the pooler's):
            its queries, attention output, feed-forward layer and LayerNorms
            run on `R + 1` rows, not `seq` (keys and values on every row),
            with the same values and dropout masks as the full output has
            there. Defaults to None: every position.

    Returns:
        dict with `sequence_output` `(batch, seq, hidden)` (`(batch, R,
        hidden)` with `output_positions`) and `pooled_output` `(batch,
        hidden)`.

    Example:
    ```python
    encoder = BertEncoder(BertConfig.from_json("configs/models/bert_test.json"))
    ids = np.ones((2, 16), "int32")
    out = encoder({"input_ids": ids, "segment_ids": 0 * ids, "input_mask": ids})
    ```
    """

    def __init__(self, config, name="bert", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(config, dict):
            config = BertConfig.from_dict(config)
        self.config = config
        # Conditional LayerNorm: the condition (a class id through a learned
        # embedding, or a vector), optionally through a Dense first.
        condition_size = config.condition_hidden_size or config.condition_size
        if config.condition_num_classes:
            self.condition_embeddings = keras.layers.Embedding(
                config.condition_num_classes, config.condition_size,
                embeddings_initializer=initializer(config.initializer_range),
                dtype=self.dtype_policy, name="condition_embeddings")
        if config.condition_hidden_size:
            self.condition_dense = keras.layers.Dense(
                config.condition_hidden_size, activation=config.condition_hidden_act,
                kernel_initializer=initializer(config.initializer_range),
                dtype=self.dtype_policy, name="condition_dense")
        self.embeddings = BertEmbeddings(
            config.vocab_size, config.hidden_size, config.max_position_embeddings,
            config.type_vocab_size, hidden_dropout_prob=config.hidden_dropout_prob,
            initializer_range=config.initializer_range, condition_size=condition_size,
            layer_norm_eps=config.layer_norm_eps, dtype=self.dtype_policy, name="embeddings")
        # One attribute per block (not a list): `tf.train.Checkpoint` tracks
        # attributes of a Keras 3 model but not the items of a list attribute.
        for i in range(config.num_hidden_layers):
            setattr(self, f"layer_{i}", TransformerLayer(
                config.hidden_size, config.num_attention_heads, config.intermediate_size,
                hidden_act=config.hidden_act, hidden_dropout_prob=config.hidden_dropout_prob,
                attention_probs_dropout_prob=config.attention_probs_dropout_prob,
                initializer_range=config.initializer_range, condition_size=condition_size,
                layer_norm_eps=config.layer_norm_eps,
                layer_norm_position=config.layer_norm_position,
                feed_forward=config.feed_forward, dtype=self.dtype_policy, name=f"layer_{i}"))
        if config.layer_norm_position == "pre":  # the residual stream is not normalised
            self.final_layer_norm = layer_norm("final_layer_norm", condition_size,
                                               config.layer_norm_eps)
        self.pooler = keras.layers.Dense(
            config.hidden_size, activation="tanh",
            kernel_initializer=initializer(config.initializer_range), dtype=self.dtype_policy,
            name="pooler")
        self.build(None)

    @property
    def transformer_layers(self) -> list:
        return [getattr(self, f"layer_{i}") for i in range(self.config.num_hidden_layers)]

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.config.hidden_size)
        if self.config.condition_num_classes:
            self.condition_embeddings.build(None)
        if self.config.condition_hidden_size:
            self.condition_dense.build((None, self.config.condition_size))
        self.embeddings.build(None)
        for layer in self.transformer_layers:
            layer.build(hidden_shape)
        if self.config.layer_norm_position == "pre":
            self.final_layer_norm.build(hidden_shape)
        self.pooler.build((None, self.config.hidden_size))
        self.built = True

    def call(self, inputs, training=False, output_positions=None):
        input_ids = ops.cast(inputs["input_ids"], "int32")
        # Causal-LM records carry no segment ids: all zeros.
        segment_ids = ops.cast(inputs.get("segment_ids", ops.zeros_like(input_ids)), "int32")
        input_mask = ops.cast(inputs["input_mask"], "int32")
        config = self.config
        bias = attention_masks.mask_bias(attention_masks.attention_mask(
            config.attention_mask_type, input_mask, segment_ids, config.prefix_length))
        condition = self._condition(inputs)
        key = model_key(inputs)  # each layer's: the step's seed folded with its index
        x = self.embeddings(input_ids, segment_ids, condition, training=training,
                            dropout_key=fold_key(key, 0))  # (batch, seq, hidden)
        rows = None
        if output_positions is not None:  # the pooler's row 0, then the positions asked for
            output_positions = ops.cast(output_positions, "int32")
            rows = ops.concatenate([ops.zeros_like(output_positions[:, :1]), output_positions],
                                   axis=1)
        layers = self.transformer_layers
        for i, layer in enumerate(layers):
            last = rows if i == len(layers) - 1 else None
            x = layer(x, bias, condition, training=training, dropout_key=fold_key(key, i + 1),
                      positions=last)
        x = self._final_norm(x, condition)
        pooled = self.pooler(x[:, 0])  # (batch, hidden)
        return {"sequence_output": x if rows is None else x[:, 1:], "pooled_output": pooled}

    def _condition(self, inputs):
        """The vector the Conditional LayerNorms see, or None."""
        config = self.config
        if not config.condition_size:
            return None
        if inputs.get("condition") is None:
            raise ValueError(f"The model has condition_size={config.condition_size}: "
                             "inputs need a `condition` of shape (batch, condition_size).")
        condition = inputs["condition"]
        if config.condition_num_classes:  # class ids (batch, 1) → (batch, condition_size)
            ids = ops.cast(condition, "int32")
            if len(ids.shape) != 2 or ids.shape[-1] != 1:
                raise ValueError(f"The model has condition_num_classes="
                                 f"{config.condition_num_classes}: `condition` must be class "
                                 f"ids of shape (batch, 1). Received: shape={ids.shape}")
            condition = self.condition_embeddings(ids[:, 0])
        condition = ops.cast(condition, "float32")
        if config.condition_hidden_size:
            condition = self.condition_dense(condition)
        return condition

    # ------------------------------------------------ key/value-cached decoding
    def empty_cache(self, batch_size: int, max_length: int):
        """Zero key/value cache for `call_with_cache`:
        `(batch, num_hidden_layers, 2, heads, max_length, head_size)`."""
        config = self.config
        heads = config.num_attention_heads
        return ops.zeros((batch_size, config.num_hidden_layers, 2, heads, max_length,
                          config.hidden_size // heads), self.compute_dtype)

    def call_with_cache(self, inputs, cache, cache_index):
        """Runs `T` new tokens per row through the encoder, attending to the
        cached keys/values of earlier positions (inference, no dropout).

        Args:
            inputs: dict. `input_ids` `(batch, T)`: the new tokens, at
                positions `cache_index … cache_index+T-1`; `input_mask` and
                `segment_ids` `(batch, max_length)`: the whole sequence, new
                tokens included (the attention mask is built from them, so
                every `attention_mask_type` decodes as it trains); `condition`
                as in `call`.
            cache: from `empty_cache`, or as returned by the previous call.
            cache_index: int tensor `(batch,)`, the position of each row's
                first new token.

        Returns:
            `(sequence_output (batch, T, hidden), updated cache)`: the same
            hidden states as `call` on the whole sequence, at those positions.
        """
        config = self.config
        input_ids = ops.cast(inputs["input_ids"], "int32")
        input_mask = ops.cast(inputs["input_mask"], "int32")
        segment_ids = ops.cast(inputs.get("segment_ids", ops.zeros_like(input_mask)), "int32")
        cache_index = ops.cast(cache_index, "int32")
        new = ops.arange(ops.shape(input_ids)[1], dtype="int32")[None]
        positions = cache_index[:, None] + new  # (batch, T)
        mask = attention_masks.attention_mask(
            config.attention_mask_type, input_mask, segment_ids, config.prefix_length)
        rows = ops.broadcast_to(positions[:, :, None], ops.shape(positions) + (ops.shape(mask)[2],))
        bias = attention_masks.mask_bias(ops.take_along_axis(mask, rows, axis=1))
        condition = self._condition(inputs)
        x = self.embeddings(input_ids, ops.take_along_axis(segment_ids, positions, axis=1),
                            condition, positions=positions)  # (batch, T, hidden)
        caches = []
        for i, layer in enumerate(self.transformer_layers):
            x, layer_cache = layer(x, bias, condition, cache=cache[:, i], cache_index=cache_index)
            caches.append(layer_cache)
        return self._final_norm(x, condition), ops.stack(caches, axis=1)

    def _final_norm(self, x, condition):
        """The last block's output as the heads see it: normalised by
        `final_layer_norm` with pre-LayerNorm blocks, else unchanged."""
        if self.config.layer_norm_position != "pre":
            return x
        return ops.cast(self.final_layer_norm(x, condition), self.compute_dtype)

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def dropout_rates(config: BertConfig) -> str:
    """The dropout rates of `config` as the 16-bit hashed dropout applies
    them (multiples of 1/65536, `dropout.effective_rate`), for the start-up log."""
    return ", ".join(
        f"{name} {rate:g} runs as {effective_rate(rate):.6g}"
        for name, rate in (("hidden_dropout_prob", config.hidden_dropout_prob),
                           ("attention_probs_dropout_prob",
                            config.attention_probs_dropout_prob)))


def initialize_weights(model: keras.Layer, seed: int) -> int:
    """Draws every truncated-normal weight of `model` again, each from a seed
    that depends on `seed` and the variable's path only.

    Keras seeds an unseeded initialiser from Python's global `random` when the
    layer is constructed, and so does every dropout layer with a rate > 0: the
    initial weights then change with the dropout rates (a rate of 0 makes no
    seed generator), the heads present or the order of construction. Drawn
    again here (at construction they are drawn twice), the initial weights of
    a run depend on `train.seed`, the model config and the variable paths
    only: not on dropout, `mixed_precision` (the weights are float32 under
    both mixed policies) or `jit_compile`.

    Args:
        model: `keras.Layer`. A built model (the encoder, or a pretrainer
            with its heads). Required.
        seed: int. The run's seed (`train.seed`). Required.

    Returns:
        The number of weights drawn again.
    """
    drawn = 0
    for layer in _sublayers(model):
        for variable, init in ((getattr(layer, "kernel", None),
                                getattr(layer, "kernel_initializer", None)),
                               (getattr(layer, "embeddings", None),
                                getattr(layer, "embeddings_initializer", None))):
            if variable is None or not isinstance(init, keras.initializers.TruncatedNormal):
                continue
            key = hashlib.sha256(f"{seed}/{variable.path}".encode()).digest()
            redraw = keras.initializers.TruncatedNormal(
                init.mean, init.stddev, seed=int.from_bytes(key[:4], "little") >> 1)
            variable.assign(redraw(variable.shape, variable.dtype))
            drawn += 1
    return drawn


def _sublayers(layer: keras.Layer) -> list:
    """`layer` and every layer held in its attributes, recursively, once each."""
    found, stack = {}, [layer]
    while stack:
        current = stack.pop()
        if id(current) in found:
            continue
        found[id(current)] = current
        for value in vars(current).values():
            values = value if isinstance(value, (list, tuple)) else [value]
            stack.extend(v for v in values if isinstance(v, keras.Layer))
    return list(found.values())
