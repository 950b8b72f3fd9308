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
        return logits + ops.cast(self.output_bias, "float32")  # (batch, predictions, vocab)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      hidden_act=self.hidden_act, initializer_range=self.initializer_range)
        return config


TASKS = ("mlm", "lm", "seq2seq")


@keras.saving.register_keras_serializable(package="pretraining")
class BertPretrainer(keras.Model):
    """Encoder + pretraining heads: the model the trainer optimises.

    - `mlm`: masked-LM logits at `masked_lm_positions` only (+ NSP logits from
      the pooled output when `next_sentence=True`).
    - `lm`, `seq2seq`: next-token logits at every position, from the same
      tied head (UniLM reuses the MLM head); the encoder's
      `attention_mask_type` (`causal` / `unilm`) keeps the future hidden.

    Args:
        encoder: `BertEncoder`.
        task: str. One of `TASKS`. Defaults to `"mlm"`.
        next_sentence: bool. Adds Google's NSP head (`nsp`, 2 classes).
        name: str. Defaults to `"pretrainer"`.

    Call arguments:
        inputs: dict of the batch features (`input_ids`, `segment_ids`,
            `input_mask`, and `masked_lm_positions` for `mlm`).
        training: bool.

    Returns:
        dict with `masked_lm_logits` `(batch, predictions, vocab)` for `mlm`
        (and `nsp_logits` `(batch, 2)`), or `lm_logits` `(batch, seq, vocab)`;
        all float32.
    """

    def __init__(self, encoder, task="mlm", next_sentence=False, name="pretrainer", **kwargs):
        super().__init__(name=name, **kwargs)
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={task!r}")
        if next_sentence and task != "mlm":
            raise ValueError(f"`next_sentence` needs task='mlm'. Received: task={task!r}")
        self.encoder = encoder
        self.task = task
        self.next_sentence = next_sentence
        config = encoder.config
        self.masked_lm = MaskedLMHead(config.vocab_size, config.hidden_size, config.hidden_act,
                                      config.initializer_range, name="mlm")
        self.masked_lm.build(None)
        if next_sentence:
            self.nsp = keras.layers.Dense(
                2, kernel_initializer=initializer(config.initializer_range), dtype="float32",
                name="nsp")
            self.nsp.build((None, config.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        encoded = self.encoder(inputs, training=training)
        embeddings = self.encoder.embeddings.word_embeddings.embeddings
        sequence = encoded["sequence_output"]
        if self.task != "mlm":
            positions = ops.broadcast_to(ops.arange(ops.shape(sequence)[1])[None],
                                         ops.shape(sequence)[:2])
            return {"lm_logits": self.masked_lm(sequence, positions, embeddings)}
        outputs = {"masked_lm_logits": self.masked_lm(sequence, inputs["masked_lm_positions"],
                                                      embeddings)}
        if self.next_sentence:
            outputs["nsp_logits"] = self.nsp(encoded["pooled_output"])
        return outputs

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder), "task": self.task,
                "next_sentence": self.next_sentence, "name": self.name}

    @classmethod
    def from_config(cls, config):
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)


def _sums(logits, labels, weights):
    labels = ops.cast(labels, "int32")
    weights = ops.cast(weights, "float32")
    losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    predictions = ops.cast(ops.argmax(logits, axis=-1), "int32")
    correct = ops.cast(ops.equal(predictions, labels), "float32")
    return ops.sum(losses * weights), ops.sum(correct * weights), ops.sum(weights)


def masked_lm_sums(logits, batch):
    """Per-replica sums for the masked-LM loss and accuracy.

    Returns `(loss_sum, correct_sum, weight_sum)` as float32 scalars; the
    caller divides by the *global* weight sum (see docs/architecture.md).
    """
    return _sums(logits, batch["masked_lm_ids"], batch["masked_lm_weights"])


def next_token_weights(task, batch):
    """Which positions predict a next token: `(batch, seq-1)` float32.

    `lm`: every position whose next token is real. `seq2seq`: only positions
    whose next token is a target token (segment 1), so the source is context.
    """
    weights = ops.cast(batch["input_mask"], "float32")[:, 1:]
    if task == "seq2seq":
        weights = weights * ops.cast(ops.equal(
            ops.cast(batch["segment_ids"], "int32")[:, 1:], 1), "float32")
    return weights


def task_sums(task, outputs, batch) -> dict:
    """Per-replica loss/accuracy sums of a task (float32 scalars):
    `loss_sum`, `correct`, `weight` and, with NSP, `nsp_loss_sum`,
    `nsp_correct`, `nsp_count`."""
    if task == "mlm":
        loss_sum, correct, weight = masked_lm_sums(outputs["masked_lm_logits"], batch)
    else:
        logits = outputs["lm_logits"][:, :-1]  # position t predicts token t+1
        loss_sum, correct, weight = _sums(logits, batch["input_ids"][:, 1:],
                                          next_token_weights(task, batch))
    sums = {"loss_sum": loss_sum, "correct": correct, "weight": weight}
    if "nsp_logits" in outputs:
        labels = batch["next_sentence_labels"][:, 0]
        sums["nsp_loss_sum"], sums["nsp_correct"], sums["nsp_count"] = _sums(
            outputs["nsp_logits"], labels, ops.ones_like(labels, "float32"))
    return sums


def prediction_counts(task, batch, next_sentence=False) -> dict:
    """Per-replica counts the losses are normalised by, from the labels alone
    (so the global counts are known before the forward pass)."""
    if task == "mlm":
        counts = {"weight": ops.sum(ops.cast(batch["masked_lm_weights"], "float32"))}
    else:
        counts = {"weight": ops.sum(next_token_weights(task, batch))}
    if next_sentence:
        counts["nsp_count"] = ops.cast(ops.shape(batch["input_ids"])[0], "float32")
    return counts


def total_loss(sums: dict, global_counts: dict):
    """The loss to differentiate: each term's sum over its *global* count."""
    loss = sums["loss_sum"] / global_counts["weight"]
    if "nsp_loss_sum" in sums:
        loss = loss + sums["nsp_loss_sum"] / global_counts["nsp_count"]
    return loss
