"""The fine-tuning model: the encoder's pooled `[CLS]` → dropout → one dense
layer per task, laid out as Google's `run_classifier.py` head."""

import keras
from keras import ops

from pretraining.dropout import Dropout, fold_key, model_key
from pretraining.model import BertEncoder

# The classifier dropout's fold of the step's dropout key: the encoder folds
# 0 (embeddings) and 1…L (its layers), so this is distinct from all of them.
CLASSIFIER_DROPOUT_KEY = 1 << 20


@keras.saving.register_keras_serializable(package="pretraining")
class ClassifierHead(keras.layers.Layer):
    """Google's classifier layer: `logits = x @ output_weights^T + output_bias`,
    with `output_weights` `(num_labels, hidden)` as in `run_classifier.py` (and
    PyTorch's `Linear.weight`), so a Google classifier checkpoint maps as is.

    Args:
        num_labels: int. Outputs (1 for regression). Required.
        hidden_size: int. Width of the pooled output. Required.
        initializer_range: float. Stddev of the truncated-normal
            `output_weights`. Defaults to 0.02.
        seed: int. Seed of `output_weights`' initial values. Defaults to 0.
        **kwargs: `name`, `dtype` and the other `keras.layers.Layer` arguments.

    Call arguments:
        pooled: float tensor `(batch, hidden)`.

    Returns:
        float32 logits `(batch, num_labels)`.
    """

    def __init__(self, num_labels, hidden_size, initializer_range=0.02, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.num_labels, self.hidden_size = num_labels, hidden_size
        self.initializer_range, self.seed = initializer_range, seed
        self.output_weights = self.add_weight(
            name="output_weights", shape=(num_labels, hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=initializer_range, seed=seed))
        self.output_bias = self.add_weight(name="output_bias", shape=(num_labels,),
                                           initializer="zeros")
        self.built = True

    def call(self, pooled):
        pooled = ops.cast(pooled, "float32")
        weights = ops.cast(self.output_weights, "float32")
        return ops.matmul(pooled, ops.transpose(weights)) + ops.cast(self.output_bias,
                                                                      "float32")

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels,
                "hidden_size": self.hidden_size,
                "initializer_range": self.initializer_range, "seed": self.seed}


@keras.saving.register_keras_serializable(package="pretraining")
class BertClassifier(keras.Model):
    """Encoder + dropout + classifier heads: the model fine-tuning trains.

    One task: the head is `classifier` (`classifier/output_weights`,
    `classifier/output_bias`). Several tasks (`num_labels` a list): heads
    `classifier_0`, `classifier_1`, …, and the task id is the encoder's
    Conditional LayerNorm condition (a class id: the encoder's
    `condition_num_classes` must be the number of tasks); the encoder's
    `W_γ, W_β` start at zero, so at step 0 every task sees the plain encoder.

    Args:
        encoder: `BertEncoder`. With `condition_size` > 0 for several tasks.
            Required.
        num_labels: int or list of int. Outputs of the head (of each task's
            head). Required.
        classifier_dropout: float. Dropout on the pooled output. Defaults to 0.1.
        seed: int. Seed of the heads' initial values.
            Defaults to 0.
        name: str. Defaults to "classifier_model".
        **kwargs: `dtype` and the other `keras.Model` arguments.

    Call arguments:
        inputs: dict of int tensors `input_ids`, `input_mask`, `segment_ids`
            `(batch, seq)`, and `task` `(batch,)` with several tasks. The
            trainer adds the dropout key (`dropout_seed`, `example_index`,
            as `BertEncoder`'s): the encoder's and the classifier's masks
            then depend on the example, not on its replica or micro-batch.
        training: bool. Whether dropout is applied. Defaults to False.

    Returns:
        dict: `logits` `(batch, num_labels)` float32 for one task; with
        several, `logits_<i>` for each task `i` (every head on every row).

    Example:
    ```python
    encoder = BertEncoder(BertConfig.from_json("configs/models/bert_test.json"))
    model = BertClassifier(encoder, num_labels=3)
    ids = np.ones((2, 16), "int32")
    logits = model({"input_ids": ids, "segment_ids": 0 * ids, "input_mask": ids})["logits"]
    ```
    """

    def __init__(self, encoder, num_labels, classifier_dropout=0.1, seed=0,
                 name="classifier_model", **kwargs):
        super().__init__(name=name, **kwargs)
        config = encoder.config
        self.encoder = encoder
        self.num_labels = num_labels
        self.classifier_dropout, self.seed = classifier_dropout, seed
        self.multi_task = isinstance(num_labels, (list, tuple))
        counts = list(num_labels) if self.multi_task else [num_labels]
        if self.multi_task and config.condition_num_classes != len(counts):
            raise ValueError(f"{len(counts)} tasks need the encoder's Conditional LayerNorm "
                             f"on the task id: model.condition_num_classes must be "
                             f"{len(counts)}. Received: condition_num_classes="
                             f"{config.condition_num_classes}")
        self.dropout = Dropout(classifier_dropout, name="classifier_dropout")
        self.heads = []
        for i, count in enumerate(counts):
            head = ClassifierHead(count, config.hidden_size, config.initializer_range,
                                  seed=seed + i, dtype=self.dtype_policy,
                                  name=f"classifier_{i}" if self.multi_task else "classifier")
            setattr(self, head.name, head)  # tracked as an attribute, not a list
            self.heads.append(head)
        self.built = True

    def call(self, inputs, training=False):
        features = dict(inputs)
        if self.multi_task:
            features["condition"] = ops.reshape(ops.cast(inputs["task"], "int32"), (-1, 1))
        pooled = self.encoder(features, training=training)["pooled_output"]  # (batch, hidden)
        pooled = self.dropout(pooled, training=training,
                              key=fold_key(model_key(inputs), CLASSIFIER_DROPOUT_KEY))
        if not self.multi_task:
            return {"logits": self.heads[0](pooled)}
        return {f"logits_{i}": head(pooled) for i, head in enumerate(self.heads)}

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_labels": self.num_labels, "classifier_dropout": self.classifier_dropout,
                "seed": self.seed, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)


def build_classifier(config, num_labels, classifier_dropout=0.1, seed=0,
                     dtype=None) -> BertClassifier:
    """A `BertClassifier` on a fresh `BertEncoder(config)`."""
    encoder = BertEncoder(config, dtype=dtype)
    return BertClassifier(encoder, num_labels, classifier_dropout, seed, dtype=dtype)
