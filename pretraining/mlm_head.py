"""Google's masked-LM head (`cls/predictions`), tied to the word embeddings."""

import keras
from keras import ops

from pretraining.layers import get_activation, initializer, layer_norm, take_rows


@keras.saving.register_keras_serializable(package="pretraining")
class MaskedLMHead(keras.layers.Layer):
    """Dense + GELU + LayerNorm, then logits from the word-embedding matrix
    (tied) plus a bias: only at the positions asked for.

    The head reads the matrix of `token_embedding` but does not own it: the
    encoder does, so the embedding weights are saved, restored and trained
    once, under the encoder's paths (`bert/embeddings/word_embeddings/...`).

    Args:
        token_embedding: `keras.layers.Embedding`. The encoder's word
            embeddings; its `input_dim` is the vocabulary, its `output_dim`
            the encoder width. Required.
        hidden_act: str. Activation of the transform. Defaults to `"gelu"`.
        initializer_range: float. Stddev of the truncated-normal initialiser.
            Defaults to 0.02.
        layer_norm_eps: float. LayerNorm epsilon. Defaults to 1e-12 (Google's).
        **kwargs: `name`, `dtype` and the other `keras.layers.Layer`
            arguments. The LayerNorm and the logits are float32 whatever
            `dtype`.

    Call arguments:
        sequence_output: float tensor `(batch, seq, hidden)`.
        positions: int tensor `(batch, predictions)` of positions to score,
            or None: `sequence_output` holds those rows already, `(batch,
            predictions, hidden)`. Defaults to None.

    Returns:
        float32 logits `(batch, predictions, vocab)`.

    Example:
    ```python
    embedding = keras.layers.Embedding(100, 16)
    embedding.build(None)
    head = MaskedLMHead(embedding, name="mlm")
    logits = head(np.zeros((2, 8, 16), "float32"), np.array([[1, 3], [0, 7]]))
    ```
    """

    def __init__(self, token_embedding, hidden_act="gelu", initializer_range=0.02,
                 layer_norm_eps=1e-12, **kwargs):
        super().__init__(**kwargs)
        # Held in a function, not as a layer attribute: neither Keras nor
        # tf.train.Checkpoint tracks it, so the matrix keeps its one path.
        self._token_embedding = lambda: token_embedding
        self.vocab_size = token_embedding.input_dim
        self.hidden_size = token_embedding.output_dim
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.transform = keras.layers.Dense(
            self.hidden_size, activation=get_activation(hidden_act),
            kernel_initializer=initializer(initializer_range), dtype=self.dtype_policy,
            name="transform")
        self.layer_norm = layer_norm("LayerNorm", layer_norm_eps=layer_norm_eps)

    @property
    def token_embedding(self):
        return self._token_embedding()

    def build(self, input_shape=None):
        self.transform.build((None, None, self.hidden_size))
        self.layer_norm.build((None, None, self.hidden_size))
        self.output_bias = self.add_weight(
            shape=(self.vocab_size,), initializer="zeros", name="output_bias", dtype="float32")
        self.built = True

    def call(self, sequence_output, positions=None):
        gathered = sequence_output if positions is None else take_rows(sequence_output, positions)
        hidden = self.layer_norm(self.transform(gathered))  # (batch, predictions, hidden)
        embeddings = self.token_embedding.embeddings  # (vocab, hidden)
        logits = ops.matmul(ops.cast(hidden, "float32"),
                            ops.transpose(ops.cast(embeddings, "float32")))
        return logits + ops.cast(self.output_bias, "float32")  # (batch, predictions, vocab)

    def get_config(self):
        config = super().get_config()
        config.update(token_embedding=keras.saving.serialize_keras_object(self.token_embedding),
                      hidden_act=self.hidden_act, initializer_range=self.initializer_range,
                      layer_norm_eps=self.layer_norm_eps)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["token_embedding"] = keras.saving.deserialize_keras_object(
            config["token_embedding"])
        return cls(**config)
