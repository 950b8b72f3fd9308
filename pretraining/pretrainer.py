"""The pretraining task model: the encoder joined to its heads."""

import keras
from keras import ops

from pretraining.config import TASKS
from pretraining.layers import initializer
from pretraining.mlm_head import MaskedLMHead
from pretraining.model import BertEncoder


@keras.saving.register_keras_serializable(package="pretraining")
class BertPretrainer(keras.Model):
    """Encoder + pretraining heads: the model the trainer optimises.

    - `mlm`: masked-LM logits at `masked_lm_positions` only (+ NSP logits from
      the pooled output when `next_sentence=True`). The encoder's last block
      computes only those rows and the pooler's (`BertEncoder`'s
      `output_positions`): the same numbers as the whole sequence gives
      there, for about a fifth of that block's work at BERT's 15% masking.
    - `lm`, `seq2seq`: next-token logits at every position, from the same
      tied head (UniLM reuses the MLM head); the encoder's
      `attention_mask_type` (`causal` / `unilm`) keeps the future hidden.

    Variable paths: the encoder's (`bert/...`), the masked-LM head's
    (`mlm/transform/...`, `mlm/LayerNorm/...`, `mlm/output_bias`) and NSP's
    (`nsp/kernel`, `nsp/bias`).

    Args:
        encoder: `BertEncoder`. Built with the same `dtype` as this model.
            Required.
        task: str. One of `TASKS`. Defaults to `"mlm"`.
        next_sentence: bool. Adds Google's NSP head (`nsp`, 2 classes; the
            only head that reads the pooler). Defaults to False.
        name: str. Defaults to `"pretrainer"`.
        **kwargs: `dtype` (e.g. `"mixed_bfloat16"`, passed on to the
            masked-LM head; NSP logits stay float32) and the other
            `keras.Model` arguments.

    Call arguments:
        inputs: dict of the batch features (`input_ids`, `segment_ids`,
            `input_mask`, and `masked_lm_positions` for `mlm`).
        training: bool. Whether dropout is applied. Defaults to False.

    Returns:
        dict with `masked_lm_logits` `(batch, predictions, vocab)` for `mlm`
        (and `nsp_logits` `(batch, 2)`), or `lm_logits` `(batch, seq, vocab)`;
        all float32.

    Example:
    ```python
    encoder = BertEncoder(BertConfig.from_json("configs/models/bert_test.json"))
    model = BertPretrainer(encoder, task="mlm", next_sentence=True)
    ```
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
        self.masked_lm = MaskedLMHead(
            encoder.embeddings.word_embeddings, config.hidden_act, config.initializer_range,
            layer_norm_eps=config.layer_norm_eps, dtype=self.dtype_policy, name="mlm")
        self.masked_lm.build(None)
        if next_sentence:
            self.nsp = keras.layers.Dense(
                2, kernel_initializer=initializer(config.initializer_range), dtype="float32",
                name="nsp")
            self.nsp.build((None, config.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        # Masked LM: the encoder's last block computes only the masked
        # positions (and the pooler's row), the rows the heads read.
        positions = inputs["masked_lm_positions"] if self.task == "mlm" else None
        encoded = self.encoder(inputs, training=training, output_positions=positions)
        sequence = encoded["sequence_output"]  # (batch, seq or predictions, hidden)
        if self.task != "mlm":
            positions = ops.broadcast_to(ops.arange(ops.shape(sequence)[1])[None],
                                         ops.shape(sequence)[:2])
            return {"lm_logits": self.masked_lm(sequence, positions)}
        outputs = {"masked_lm_logits": self.masked_lm(sequence)}  # gathered by the encoder
        if self.next_sentence:
            outputs["nsp_logits"] = self.nsp(encoded["pooled_output"])
        return outputs

    def trained_variables(self) -> list:
        """The variables the task's loss reaches: all trainable variables but
        the pooler's when there is no NSP head (its only reader)."""
        if self.next_sentence:
            return list(self.trainable_variables)
        pooler = {id(v) for v in self.encoder.pooler.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in pooler]

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder), "task": self.task,
                "next_sentence": self.next_sentence, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)
