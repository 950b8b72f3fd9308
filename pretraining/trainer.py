"""The distributed training loop: data → model → optimizer → checkpoints.

The only module that joins the model, the optimizer and `data_pipeline.input`.
A custom loop rather than `model.fit` (see docs/architecture.md): `steps_per_loop` steps
per `tf.function` call, loss normalised by the global count of masked tokens,
gradients all-reduced once, clipped by global norm after the all-reduce.
"""

import contextlib
import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data_pipeline import input as data_input
from pretraining import checkpoints, losses, metrics_log, preemption, progress, run_lock
from pretraining.config import ExperimentConfig, resolve_path
from pretraining.flops import mlm_train_flops
from pretraining.model import BertEncoder
from pretraining.pretrainer import BertPretrainer
from pretraining.strategy import is_default_strategy
from pretraining.optimizers import (ExponentialMovingAverage, build_gradient_transform,
                                    create_ema, create_optimizer)


@dataclasses.dataclass
class TrainState:
    """Everything the loop builds in the strategy's scope."""

    model: BertPretrainer
    optimizer: keras.optimizers.Optimizer
    ema: ExponentialMovingAverage | None
    step: tf.Variable
    data_offset: tf.Variable
    nan_skips: tf.Variable
    checkpoint: checkpoints.RunCheckpoint


def check_data(experiment: ExperimentConfig, data_dir: str, split: str):
    """Refuses records whose manifest disagrees with the experiment."""
    manifest = data_input.read_manifest(data_dir)
    model = experiment.model
    problems = []
    if manifest.task != experiment.task:
        problems.append(f"task: data has {manifest.task!r}, experiment has {experiment.task!r}")
    if manifest.vocab_size != model.vocab_size:
        problems.append(f"vocab_size: data has {manifest.vocab_size}, "
                        f"model has {model.vocab_size}")
    if manifest.max_seq_length > model.max_position_embeddings:
        problems.append(f"max_seq_length: data has {manifest.max_seq_length}, longer than the "
                        f"model's max_position_embeddings={model.max_position_embeddings}")
    if problems:
        raise ValueError(f"The {split} records in {data_dir} do not fit the experiment: "
                         + "; ".join(problems)
                         + ". Rebuild the data or fix the model config.")
    data_input.check_shards(data_dir, manifest)  # every shard present, not cut short
    return manifest


def chief_and_worker(strategy) -> tuple[bool, int | None]:
    """(is this process the chief, this worker's id if it is not)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True, None
    jobs = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief" or (
            "chief" not in jobs and resolver.task_type == "worker" and resolver.task_id == 0):
        return True, None
    return False, resolver.task_id


def build_state(experiment: ExperimentConfig, strategy, model_dir: str,
                worker_id: int | None = None, next_sentence: bool = False) -> TrainState:
    """Creates model, optimizer (with its slots), step and checkpoint in scope."""
    policy = experiment.train.mixed_precision or "float32"
    with strategy.scope():
        encoder = BertEncoder(experiment.model, dtype=policy)
        model = BertPretrainer(encoder, experiment.task, next_sentence, dtype=policy)
        optimizer = create_optimizer(experiment.optimizer, experiment.train.steps,
                                     model.trainable_variables)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        ema = create_ema(experiment.optimizer, model.trainable_variables)
        counters = [tf.Variable(0, dtype=tf.int64, trainable=False, name=name,
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                    for name in ("global_step", "data_offset", "nan_skips")]
        step, data_offset, nan_skips = counters
        checkpoint = checkpoints.RunCheckpoint(
            model_dir, model=model, optimizer=optimizer, step=step,
            max_to_keep=experiment.train.keep_checkpoints,
            extra={"data_offset": data_offset, "nan_skips": nan_skips,
                   **({"ema": ema} if ema is not None else {})}, worker_id=worker_id)
    return TrainState(model, optimizer, ema, step, data_offset, nan_skips, checkpoint)


class Trainer:
    """Runs an experiment under a strategy and writes everything to `model_dir`.

    Args:
        experiment: `ExperimentConfig`.
        model_dir: str. Run directory: checkpoints, TensorBoard events,
            `config.json`, `metrics.jsonl`, `summary.json`.
        strategy: `tf.distribute.Strategy`. Defaults to the default strategy.
    """

    def __init__(self, experiment: ExperimentConfig, model_dir: str, strategy=None):
        self.experiment = experiment
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
            raise ValueError(f"model_dir={model_dir!r} is an existing file, not a directory: "
                             "pass a directory (new or a run's).")
        train = experiment.train
        replicas = self.strategy.num_replicas_in_sync
        if train.global_batch_size % (replicas * train.gradient_accumulation_steps):
            raise ValueError(
                f"train.global_batch_size={train.global_batch_size} must be divisible by the "
                f"number of replicas ({replicas}) times train.gradient_accumulation_steps "
                f"({train.gradient_accumulation_steps}).")
        self.train_dir = resolve_path(experiment.data.train_dir)
        self.eval_dir = resolve_path(experiment.data.eval_dir) if experiment.data.eval_dir else ""
        self.manifest = check_data(experiment, self.train_dir, "train")
        if self.eval_dir:
            data_input.check_same_tokenizer(
                self.manifest, self.train_dir, check_data(experiment, self.eval_dir, "eval"),
                self.eval_dir)
        data_input.check_resume_tokenizer(os.path.join(model_dir, "data_manifest.json"),
                                          self.manifest, self.train_dir)
        if self.eval_dir:
            self._probe_eval()
        self.is_chief, worker_id = chief_and_worker(self.strategy)
        self.log = metrics_log.MetricsLog(model_dir, enabled=self.is_chief)
        # Nothing in the run directory changes until every check has passed;
        # the lock (removed again on any exit) is the first thing written.
        try:
            tf.io.gfile.makedirs(model_dir)
        except (OSError, tf.errors.OpError) as e:
            raise ValueError(f"model_dir={model_dir!r} cannot be created: "
                             f"{checkpoints.first_line(e)}.") from None
        self.lock = run_lock.RunLock(model_dir) if self.is_chief else None
        self._sigterm = None  # The SIGTERM flag while `train` runs.
        try:
            self._init_after_lock(experiment, model_dir, worker_id)
        except BaseException:
            self.close()
            raise

    def close(self):
        """Closes the event files and releases the run directory's lock (also
        done at exit)."""
        if getattr(self, "log", None) is not None:
            self.log.close()
        if self.lock is not None:
            self.lock.release()

    def _probe_eval(self):
        """Reads the first eval batch now, so a corrupt eval shard stops the run
        before training rather than at the first evaluation."""
        train = self.experiment.train
        try:
            next(iter(data_input.make_dataset(self.eval_dir, train.global_batch_size,
                                              training=False, seed=train.seed)))
        except StopIteration:
            pass
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                tf.errors.FailedPreconditionError) as e:
            self._raise_data_error(self.eval_dir, e)

    @staticmethod
    def _raise_data_error(data_dir: str, error: Exception):
        """A `ValueError` naming the shard (and record) that broke a read of
        `data_dir`; the original error again when every shard reads fine (then
        it was not the data)."""
        problem = data_input.find_bad_record(data_dir, error)
        if problem is None:
            raise error
        raise ValueError(problem.message()) from None

    def _init_after_lock(self, experiment, model_dir, worker_id):
        train = experiment.train
        replicas = self.strategy.num_replicas_in_sync
        logging.info("TensorFlow %s, Keras %s; %d replica(s); global batch %d = %d per replica",
                     tf.__version__, keras.__version__, replicas, train.global_batch_size,
                     train.global_batch_size // replicas)
        keras.utils.set_random_seed(train.seed)
        self.next_sentence = experiment.task == "mlm" and self.manifest.next_sentence
        self.sum_keys = ("loss_sum", "correct", "weight") + (
            ("nsp_loss_sum", "nsp_correct", "nsp_count") if self.next_sentence else ())
        self.state = build_state(experiment, self.strategy, model_dir, worker_id,
                                 self.next_sentence)
        num_params = sum(int(np.prod(v.shape)) for v in self.state.model.trainable_variables)
        predicted = (self.manifest.max_predictions_per_seq if experiment.task == "mlm"
                     else self.manifest.max_seq_length)
        self.flops_per_step = mlm_train_flops(
            experiment.model, train.global_batch_size, self.manifest.max_seq_length, predicted)
        logging.info("Model: %d trainable parameters, %.3g FLOPs per step", num_params,
                     self.flops_per_step)
        # Resume order: this run's own latest checkpoint → init_checkpoint → scratch.
        self.resumed_from = self.state.checkpoint.restore_or_initialize()
        if self.resumed_from is None and train.init_checkpoint:
            checkpoints.load_init_checkpoint(resolve_path(train.init_checkpoint),
                                             self.state.model)
            if self.state.ema is not None:
                self.state.ema.reset()
        elif self.resumed_from is None:
            logging.info("Starting from scratch (no checkpoint, no train.init_checkpoint).")
        # Every check has passed: only now is the run directory written.
        self.log.drop_partial_line()  # (a damaged earlier line: refused, nothing written)
        self.log.write_config(experiment, self.manifest)
        self.gradient_transform = build_gradient_transform(experiment.optimizer)
        self._train_loop = None
        self._flag_sum = None
        # train.jit_compile: on one device (the default strategy) XLA compiles
        # the whole step, forward, backward, clipping and the update, into one
        # program, called from the loop without `strategy.run`. Under a
        # distribution strategy XLA cannot place the all-reduce and the update
        # (`tfvariable_on_a_different_device`), so it compiles forward+backward only.
        self.whole_step_xla = bool(train.jit_compile) and is_default_strategy(self.strategy)
        self._compiled_forward_backward = (
            tf.function(self._forward_backward, jit_compile=True)
            if train.jit_compile and not self.whole_step_xla else self._forward_backward)

    # ---------------------------------------------------------------- data
    def _dataset(self, data_dir: str, training: bool):
        train = self.experiment.train
        # The data position: every step consumed one global batch (plus any
        # batches skipped after a non-finite step).
        skip = int(self.state.step.numpy() + self.state.data_offset.numpy()) if training else 0

        def dataset_fn(context):
            per_replica = context.get_per_replica_batch_size(train.global_batch_size)
            replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
            options = dict(training=training, seed=train.seed,
                           shuffle_buffer=self.experiment.data.shuffle_buffer)
            if self.experiment.data.shard_by == "files" and context.num_input_pipelines > 1:
                # Disjoint files per host; `skip` counts global batches, this
                # pipeline yields one batch per local replica and step.
                dataset = data_input.make_dataset(
                    data_dir, per_replica, input_context=context,
                    skip_batches=skip * replicas_per_pipeline, **options)
                if not training and replicas_per_pipeline > 1:
                    # Batches go round-robin to the local replicas and a last
                    # incomplete round would be dropped: complete it with
                    # zero-weight batches (a trailing padding round is harmless).
                    padding = dataset.take(1).map(
                        lambda b: tf.nest.map_structure(tf.zeros_like, b))
                    dataset = dataset.concatenate(padding.repeat(replicas_per_pipeline - 1))
                return dataset
            dataset = data_input.make_dataset(data_dir, train.global_batch_size,
                                              skip_batches=skip, **options)
            if context.num_replicas_in_sync == 1:
                return dataset
            return _slice_of_global_batches(dataset, context.input_pipeline_id,
                                            replicas_per_pipeline, per_replica)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    # ---------------------------------------------------------------- steps
    def _forward_backward(self, batch, counts):
        """Loss sums and the gradient of the loss normalised by the *global*
        prediction `counts` (the part XLA compiles with `train.jit_compile`;
        the all-reduce and the update stay outside)."""
        model, optimizer = self.state.model, self.state.optimizer
        with tf.GradientTape() as tape:
            sums = losses.task_sums(self.experiment.task, model(batch, training=True), batch)
            loss = losses.total_loss(sums, counts)
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                loss = optimizer.scale_loss(loss)  # float16: keep small gradients
        return sums, tape.gradient(loss, model.trainable_variables)

    def _accumulated_forward_backward(self, batch, counts):
        """`_forward_backward` over `train.gradient_accumulation_steps` equal
        micro-batches of `batch`, sums added up: the same numbers as the whole
        batch at once, with the activation memory of one micro-batch."""
        k = self.experiment.train.gradient_accumulation_steps
        if k == 1:
            return self._compiled_forward_backward(batch, counts)
        micro = tf.nest.map_structure(
            lambda t: tf.reshape(t, [k, t.shape[0] // k] + t.shape[1:]), batch)
        sums, grads = self._compiled_forward_backward(
            tf.nest.map_structure(lambda t: t[0], micro), counts)
        reached = [g is not None for g in grads]
        grads = [tf.convert_to_tensor(g) for g in grads if g is not None]
        for i in tf.range(1, k):
            more_sums, more = self._compiled_forward_backward(
                tf.nest.map_structure(lambda t: t[i], micro), counts)
            sums = {key: value + more_sums[key] for key, value in sums.items()}
            grads = [g + tf.convert_to_tensor(m) for g, m in
                     zip(grads, [m for m in more if m is not None])]
        grads = iter(grads)
        return sums, [next(grads) if r else None for r in reached]

    def _replica_step(self, batch):
        """One optimizer update on this replica's share of the global batch."""
        model, state = self.state.model, self.state
        context = tf.distribute.get_replica_context()
        # The global number of predictions, from the labels, before the
        # forward pass: each replica's loss is its sum over that count, so the
        # summed gradients equal one device's whatever the replicas.
        counts = losses.prediction_counts(self.experiment.task, batch, self.next_sentence)
        counts = {k: tf.maximum(context.all_reduce("SUM", v), 1.0) for k, v in counts.items()}
        sums, grads = self._accumulated_forward_backward(batch, counts)
        # Variables the loss does not reach (the pooler without an NSP head)
        # are left out of the update; decided once, when the step is traced.
        pairs = [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
        variables = [v for _, v in pairs]
        grads = context.all_reduce("SUM", [tf.convert_to_tensor(g) for g, _ in pairs])
        scale = None
        if isinstance(state.optimizer, keras.optimizers.LossScaleOptimizer):
            # Transforms (clipping) see true gradients; the loss-scale optimizer
            # gets them scaled again, skips non-finite steps and adapts the scale.
            scale = tf.cast(state.optimizer.dynamic_scale, tf.float32)
            grads = [g / scale for g in grads]
        grads, grad_norm = self.gradient_transform(grads, variables, state.optimizer.iterations)
        if scale is not None:
            grads = [g * scale for g in grads]
        # Keras all-reduces (sums) again inside apply_gradients under a strategy.
        replicas = self.strategy.num_replicas_in_sync
        grads = [g / replicas for g in grads] if replicas > 1 else grads
        state.optimizer.apply_gradients(zip(grads, variables))
        if state.ema is not None:
            state.ema.update()
        return dict(sums, grad_norm=grad_norm / replicas)

    def _make_train_loop(self):
        strategy, step = self.strategy, self.state.step
        keys = self.sum_keys + ("grad_norm",)
        if self.whole_step_xla:
            compiled_step = tf.function(self._replica_step, jit_compile=True)

            def run_step(batch):
                return compiled_step(batch)
        else:
            def run_step(batch):
                return strategy.run(self._replica_step, args=(batch,))

        @tf.function
        def train_loop(iterator, num_steps):
            totals = tf.zeros([len(keys)])
            for _ in tf.range(num_steps):
                out = run_step(next(iterator))
                totals += tf.stack([strategy.reduce("SUM", out[k], axis=None) for k in keys])
                step.assign_add(1)
            return dict(zip(keys, tf.unstack(totals)))

        return train_loop

    def _eval_replica_step(self, batch):
        sums = losses.task_sums(self.experiment.task, self.state.model(batch, training=False),
                               batch)
        return tf.stack([sums[k] for k in self.sum_keys])

    def evaluate(self) -> dict:
        """Held-out loss, accuracy and perplexity over the whole eval split (or
        `eval_steps`), with the EMA weights when `optimizer.ema_decay` is set."""
        if not self.eval_dir:
            return {}
        strategy, limit = self.strategy, self.experiment.train.eval_steps

        @tf.function
        def eval_step(batch):
            per_replica = strategy.run(self._eval_replica_step, args=(batch,))
            return strategy.reduce("SUM", per_replica, axis=None)

        totals = np.zeros(len(self.sum_keys))
        # A SIGTERM is acted on between batches (one worker: under
        # MultiWorkerMirroredStrategy the workers agree after the evaluation).
        sigterm = self._sigterm if not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy) else None
        with self.state.ema.swap() if self.state.ema is not None else contextlib.nullcontext():
            batches = iter(self._dataset(self.eval_dir, training=False))
            i = 0
            while not (limit and i >= limit):
                if sigterm is not None and sigterm.received:
                    break
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                        tf.errors.FailedPreconditionError) as e:
                    self._raise_data_error(self.eval_dir, e)
                totals += eval_step(batch).numpy()
                i += 1
        if sigterm is not None and sigterm.received:
            self._stop_preempted()
        result = progress.metrics(dict(zip(self.sum_keys, totals)), self.experiment.task)
        result["predictions"] = int(totals[self.sum_keys.index("weight")])
        return {f"eval_{k}": v for k, v in result.items()}

    # ---------------------------------------------------------------- loop
    def train(self, stop_at: int | None = None) -> dict:
        """Trains up to `train.steps`, checkpointing and evaluating on schedule.

        Args:
            stop_at: int. Stop (with a checkpoint) at this step instead, as an
                interrupted run would; the schedule still spans `train.steps`.
        """
        train = self.experiment.train
        state = self.state
        step = int(state.step.numpy())
        end = min(stop_at, train.steps) if stop_at else train.steps
        try:
            with preemption.SigtermFlag() as self._sigterm:
                if step >= end:
                    logging.info("Run already at step %d of %d: nothing to train.", step, end)
                else:
                    self._train_until(step, end)
                summary = {"step": int(state.step.numpy())}
                summary.update(self.log.last_train_record())
                result = self.evaluate()
                if result:
                    self._log_eval(summary["step"], result)
                summary.update(result)
                self.log.write_summary(summary)
        finally:
            self._sigterm = None
        return summary

    def _stop_preempted(self):
        """After a SIGTERM: a checkpoint at the current step (unless there is
        one), then `Preempted` (exit 75)."""
        step = int(self.state.step.numpy())
        latest = self.state.checkpoint.latest
        if not latest or not latest.endswith(f"ckpt-{step}"):
            self.state.checkpoint.save(step)
        raise preemption.Preempted(
            f"SIGTERM received: checkpoint saved at step {step} in "
            f"{self.state.checkpoint.directory}; run the same command to resume.")

    def _train_until(self, step: int, end: int):
        train, state = self.experiment.train, self.state
        if self._train_loop is None:
            self._train_loop = self._make_train_loop()
        iterator = iter(self._dataset(self.train_dir, training=True))
        log_every = train.log_every or train.steps_per_loop
        window = progress.Window()
        eta = progress.Eta(step, train.steps)
        sigterm = self._sigterm
        while step < end:
            boundaries = [end, _next_multiple(step, train.steps_per_loop),
                          _next_multiple(step, train.checkpoint_every),
                          _next_multiple(step, log_every)]
            if train.eval_every:
                boundaries.append(_next_multiple(step, train.eval_every))
            n = min(boundaries) - step
            try:
                totals = {k: float(v) for k, v in
                          self._train_loop(iterator, tf.constant(n, tf.int32)).items()}
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                    tf.errors.FailedPreconditionError) as e:
                self._raise_data_error(self.train_dir, e)
            if not all(np.isfinite(v) for v in totals.values()):
                step, iterator = self._handle_non_finite(step, step + n, totals)
                window = progress.Window()
                continue
            step += n
            window.add(totals, n)
            if step % log_every == 0 or step == end:
                record = window.record(
                    step, float(state.optimizer.learning_rate), task=self.experiment.task,
                    global_batch_size=train.global_batch_size,
                    seq_length=self.manifest.max_seq_length,
                    flops_per_step=self.flops_per_step, peak_flops=train.peak_tflops * 1e12)
                logging.info("step %d/%d  %s  lr %.3g  grad_norm %.3f  %.1f examples/s  "
                             "%.0f tokens/s  %.3f TFLOP/s%s  ETA %s", step, train.steps,
                             _format_metrics(record), record["learning_rate"],
                             record["grad_norm"], record["examples_per_second"],
                             record["tokens_per_second"], record["tflops_per_second"],
                             f"  MFU {record['mfu']:.1%}" if "mfu" in record else "",
                             eta.format(step))
                self.log.train_record(record)
                window = progress.Window()
            stopping = self._any_worker(sigterm.received)
            if step % train.checkpoint_every == 0 or step == end or stopping:
                state.checkpoint.save(step)
            if stopping:
                self._stop_preempted()
            if train.eval_every and step % train.eval_every == 0 and step < train.steps:
                self._log_eval(step, self.evaluate())

    def _any_worker(self, flag: bool) -> bool:
        """True if `flag` is set on any worker. With several workers (one of
        them preempted, say) they must all checkpoint at the same step and
        stop together, or the others would wait in a collective forever."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return flag
        if self._flag_sum is None:
            strategy = self.strategy

            @tf.function
            def flag_sum(value):
                per_replica = strategy.run(lambda: tf.identity(value))
                return strategy.reduce("SUM", per_replica, axis=None)

            self._flag_sum = flag_sum
        return bool(self._flag_sum(tf.constant(float(flag))).numpy() > 0)

    def _handle_non_finite(self, start: int, stop: int, totals: dict):
        """Stops the run, or (with `train.max_nan_skips`) restores the last
        checkpoint and skips the data of the failed steps."""
        state = self.state
        where = (f"Non-finite loss or gradient norm between steps {start} and {stop} "
                 f"(loss sum {totals['loss_sum']}, grad norm sum {totals['grad_norm']})")
        skipped = int(state.nan_skips.numpy())
        if skipped >= self.experiment.train.max_nan_skips or not state.checkpoint.latest:
            raise FloatingPointError(
                f"{where}. The last good checkpoint is kept: {state.checkpoint.latest}. Lower "
                "optimizer.learning_rate, check the data, or allow skips with "
                "train.max_nan_skips.")
        restored = state.checkpoint.restore_or_initialize()
        state.data_offset.assign_add(stop - restored)
        state.nan_skips.assign(skipped + 1)
        logging.warning("%s: restored step %d and skipped %d batches of data (skip %d of %d).",
                        where, restored, stop - restored, skipped + 1,
                        self.experiment.train.max_nan_skips)
        return restored, iter(self._dataset(self.train_dir, training=True))

    def _log_eval(self, step: int, result: dict):
        result = {k[5:]: v for k, v in result.items()}
        logging.info("Eval at step %d: %s (%d predictions)", step, _format_metrics(result),
                     result["predictions"])
        self.log.scalars("eval", step, result)


def _slice_of_global_batches(dataset, pipeline_id: int, replicas_per_pipeline: int,
                             per_replica: int):
    """This input pipeline's rows of every global batch, as one batch per local
    replica: the replicas of all hosts together see exactly the global batch
    that one device would see, in the same order."""
    rows = replicas_per_pipeline * per_replica
    start = pipeline_id * rows

    def take(batch):
        return {name: tf.reshape(value[start:start + rows],
                                 [replicas_per_pipeline, per_replica] + value.shape[1:])
                for name, value in batch.items()}

    return dataset.map(take).unbatch()


def _format_metrics(record: dict) -> str:
    names = ("loss", "masked_lm_accuracy", "accuracy", "perplexity", "nsp_accuracy")
    return "  ".join(f"{name} {record[name]:.4f}" for name in names if name in record)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def summary_path(model_dir: str) -> str:
    return os.path.join(model_dir, "summary.json")


def read_summary(model_dir: str) -> dict:
    with tf.io.gfile.GFile(summary_path(model_dir)) as f:
        return json.load(f)
