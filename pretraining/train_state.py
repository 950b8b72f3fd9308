"""What the trainer builds in the strategy's scope: model, optimizer, counters,
checkpoint."""

import dataclasses

import keras
import tensorflow as tf
from absl import logging

from pretraining import checkpoints
from pretraining.config import ExperimentConfig
from pretraining.model import BertEncoder, dropout_rates, initialize_weights
from pretraining.optimizers import ExponentialMovingAverage, create_ema, create_optimizer
from pretraining.pretrainer import BertPretrainer


@dataclasses.dataclass
class TrainState:
    """Everything the loop builds in the strategy's scope."""

    model: BertPretrainer
    variables: list  # What the task trains (`BertPretrainer.trained_variables`).
    optimizer: keras.optimizers.Optimizer
    ema: ExponentialMovingAverage | None
    step: tf.Variable
    data_offset: tf.Variable
    nan_skips: tf.Variable
    checkpoint: checkpoints.RunCheckpoint


def build_state(experiment: ExperimentConfig, strategy, model_dir: str,
                worker_id: int | None = None, next_sentence: bool = False) -> TrainState:
    """Creates model, optimizer (with its slots), counters and checkpoint in
    `strategy`'s scope; the model computes in `train.mixed_precision`."""
    policy = experiment.train.mixed_precision or "float32"
    with strategy.scope():
        encoder = BertEncoder(experiment.model, dtype=policy)
        model = BertPretrainer(encoder, experiment.task, next_sentence, dtype=policy)
        # Initial weights from their own stream: (train.seed, variable path).
        initialize_weights(model, experiment.train.seed)
        logging.info("Dropout (16-bit hashed masks keyed on the example, rates in 1/65536): "
                     "%s.", dropout_rates(experiment.model))
        optimizer = create_optimizer(experiment.optimizer, experiment.train.steps,
                                     model.trainable_variables)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = create_ema(experiment.optimizer, model.trainable_variables)
        step, data_offset, nan_skips = [
            tf.Variable(0, dtype=tf.int64, trainable=False, name=name,
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for name in ("global_step", "data_offset", "nan_skips")]
        checkpoint = checkpoints.RunCheckpoint(
            model_dir, model=model, optimizer=optimizer, step=step,
            max_to_keep=experiment.train.keep_checkpoints,
            extra={"data_offset": data_offset, "nan_skips": nan_skips,
                   **({"ema": ema} if ema is not None else {})}, worker_id=worker_id)
    return TrainState(model, model.trained_variables(), optimizer, ema, step, data_offset,
                      nan_skips, checkpoint)
