"""Pretraining heads and the task model that joins them to the encoder."""

import keras
from keras import ops

from pretraining.layers import get_activation, initializer, layer_norm
from pretraining.model import BertEncoder


@keras.saving.register_keras_serializable(package="pretraining")
class MaskedLMHead(keras.layers.Layer):
    """Google's `cls/predictions`: dense + GELU + LayerNorm, then logits from the
    (tied) word-embedding matrix plus a bias — only at the masked positions.

    Args:
        vocab_size: int. Number of output classes.
        hidden_size: int. Encoder width.
        hidden_act: str. Activation of the transform. Defaults to `"gelu"`.
        initializer_range: float. Stddev of the truncated-normal initialiser.

    Call arguments:
        sequence_output: float tensor `(batch, seq, hidden)`.
        positions: int tensor `(batch, predictions)` of positions to score.
        embeddings: float tensor `(vocab, hidden)`, the word embeddings.

    Returns:
        float32 logits `(batch, predictions, vocab)`.
    """

    def __init__(self, vocab_size, hidden_size, hidden_act="gelu", initializer_range=0.02,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.transform = keras.layers.Dense(
            hidden_size, activation=get_activation(hidden_act),
            kernel_initializer=initializer(initializer_range), name="transform")
        self.layer_norm = layer_norm("LayerNorm")

    def build(self, input_shape=None):
        self.transform.build((None, None, self.hidden_size))
        self.layer_norm.build((None, None, self.hidden_size))
        self.output_bias = self.add_weight(
            shape=(self.vocab_size,), initializer="zeros", name="output_bias", dtype="float32")
        self.built = True

    def call(self, sequence_output, positions, embeddings):
        positions = ops.cast(positions, "int32")
        gathered = ops.take_along_axis(sequence_output, positions[:, :, None], axis=1)
        hidden = self.layer_norm(self.transform(gathered))  # (batch, predictions, hidden)
        logits = ops.matmul(ops.cast(hidden, "float32"),
                            ops.transpose(ops.cast(embeddings, "float32")))
        return logits + self.output_bias  # (batch, predictions, vocab)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      hidden_act=self.hidden_act, initializer_range=self.initializer_range)
        return config


@keras.saving.register_keras_serializable(package="pretraining")
class BertPretrainer(keras.Model):
    """Encoder + masked-LM head: the model the trainer optimises for `mlm`.

    Args:
        encoder: `BertEncoder`.
        name: str. Defaults to `"pretrainer"`.

    Call arguments:
        inputs: dict of the batch features: `input_ids`, `segment_ids`,
            `input_mask`, `masked_lm_positions`.
        training: bool.

    Returns:
        dict with `masked_lm_logits` `(batch, predictions, vocab)` float32.
    """

    def __init__(self, encoder, name="pretrainer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.encoder = encoder
        config = encoder.config
        self.masked_lm = MaskedLMHead(config.vocab_size, config.hidden_size, config.hidden_act,
                                      config.initializer_range, name="mlm")
        self.masked_lm.build(None)
        self.built = True

    def call(self, inputs, training=False):
        encoded = self.encoder(inputs, training=training)
        embeddings = self.encoder.embeddings.word_embeddings.embeddings
        logits = self.masked_lm(encoded["sequence_output"], inputs["masked_lm_positions"],
                                embeddings)
        return {"masked_lm_logits": logits}

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder), "name": self.name}

    @classmethod
    def from_config(cls, config):
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)


def masked_lm_sums(logits, batch):
    """Per-replica sums for the masked-LM loss and accuracy.

    Returns `(loss_sum, correct_sum, weight_sum)` as float32 scalars; the
    caller divides by the *global* weight sum (see DESIGN.md).
    """
    labels = ops.cast(batch["masked_lm_ids"], "int32")
    weights = ops.cast(batch["masked_lm_weights"], "float32")
    losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    predictions = ops.cast(ops.argmax(logits, axis=-1), "int32")
    correct = ops.cast(ops.equal(predictions, labels), "float32")
    return ops.sum(losses * weights), ops.sum(correct * weights), ops.sum(weights)
