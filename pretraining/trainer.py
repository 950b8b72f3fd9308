"""The distributed training loop: data → model → optimizer → checkpoints.

The only module that joins the model, the optimizer and `data_pipeline.input`.
A custom loop rather than `model.fit` (see docs/architecture.md): `steps_per_loop` steps
per `tf.function` call, loss normalised by the global count of masked tokens,
gradients all-reduced once, clipped by global norm after the all-reduce.

Read in call order: `__init__` (checks, state, resume), `train`, `_train_until`
(checkpoints, logs, evaluations), the compiled loop, `_replica_step` (one update
on one replica), forward/backward, `evaluate`; then the helpers.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data_pipeline import input as data_input
from pretraining import checkpoints, data_checks, losses, metrics_log, preemption, progress
from pretraining import adversarial, dropout, eval_samples, run_config, run_lock, topology
from pretraining import strategy as strategies
from pretraining.config import ExperimentConfig, resolve_path
from pretraining.data_checks import DATA_ERRORS, check_data, probe_eval, raise_data_error
from pretraining.flops import mlm_train_flops
from pretraining.optimizers import build_gradient_transform, gradient_transforms
from pretraining.train_state import build_state


class Trainer:
    """Runs an experiment under a strategy and writes everything to `model_dir`.

    Args:
        experiment: `ExperimentConfig`. The whole experiment.
        model_dir: str. Run directory: checkpoints, TensorBoard events,
            `config.json`, `metrics.jsonl`, `summary.json`.
        strategy: `tf.distribute.Strategy`. Defaults to None: the default
            strategy.
        allow_changes: sequence of str. Fields a resume may change
            (`run_config.GUARDED`). Defaults to ().
        overwrite: bool. Delete the run directory's old run once every check
            has passed, and start again. Defaults to False.
    """

    # ================================================================ setup
    def __init__(self, experiment: ExperimentConfig, model_dir: str, strategy=None, *,
                 allow_changes=(), overwrite: bool = False):
        self.experiment = experiment
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        train = experiment.train
        run_config.check_model_dir(model_dir)
        data_checks.check_batch(experiment, self.strategy.num_replicas_in_sync)
        self.train_dir = resolve_path(experiment.data.train_dir)
        self.eval_dir = resolve_path(experiment.data.eval_dir) if experiment.data.eval_dir else ""
        self.manifest = check_data(experiment, self.train_dir, "train")
        eval_manifest = check_data(experiment, self.eval_dir, "eval") if self.eval_dir else None
        data_checks.check_eval_matches(self.manifest, self.train_dir, eval_manifest, self.eval_dir)
        # Resuming: the same tokenizer, model, task and plan as the run's.
        self.changes = run_config.check_resume(experiment, model_dir, self.manifest,
                                               self.train_dir, allow_changes, overwrite)
        if self.eval_dir:
            probe_eval(self.eval_dir, train.global_batch_size, train.seed)
        data_checks.warn_derived(experiment, self.manifest, eval_manifest)
        self.is_chief, worker_id = strategies.chief_and_worker(self.strategy)
        self.log = metrics_log.MetricsLog(model_dir, enabled=self.is_chief)
        # Nothing in the run directory changes until every check has passed;
        # the lock (removed again on any exit) is the first thing written.
        try:
            tf.io.gfile.makedirs(model_dir)
        except (OSError, tf.errors.OpError) as e:
            raise ValueError(f"model_dir={model_dir!r} cannot be created: "
                             f"{checkpoints.first_line(e)}.") from None
        self.lock = run_lock.RunLock(model_dir) if self.is_chief else None
        if overwrite and self.is_chief:  # every check passed and the lock is ours
            run_config.clear(model_dir)
        self._sigterm = None  # The SIGTERM flag while `train` runs.
        try:
            self._init_after_lock(experiment, model_dir, worker_id)
        except BaseException:
            self.close()
            raise

    def _init_after_lock(self, experiment, model_dir, worker_id):
        train = experiment.train
        strategies.log_batch_arithmetic(self.strategy, train.global_batch_size,
                                        train.gradient_accumulation_steps)
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
        logging.info("Model: %d trainable parameters; task %r trains %d of its %d variables; "
                     "%.3g FLOPs per step", num_params, experiment.task, len(self.state.variables),
                     len(self.state.model.trainable_variables), self.flops_per_step)
        # Resume order: this run's own latest checkpoint → init_checkpoint → scratch.
        self.resumed_from = self.state.checkpoint.restore_or_initialize()
        if self.resumed_from is None and train.init_checkpoint:
            checkpoints.load_init_checkpoint(resolve_path(train.init_checkpoint),
                                             self.state.model)
            if self.state.ema is not None:
                self.state.ema.reset()
        elif self.resumed_from is None:
            logging.info("Starting from scratch (no checkpoint, no train.init_checkpoint).")
        run_config.log_schedule(self.changes, experiment, self.resumed_from)
        # Every check has passed: only now is the run directory written.
        self.log.drop_partial_line()  # (a damaged earlier line: refused, nothing written)
        self.log.write_config(experiment, self.manifest, self.resumed_from or 0)
        topology.log_resume(model_dir, self.strategy, train, self.resumed_from, self.is_chief)
        if self.resumed_from is None and train.save_initial_checkpoint:
            self.state.checkpoint.save(0)  # ckpt-0: the weights before the first update
        # train.jit_compile: on one device (the default strategy) XLA compiles the
        # whole step (forward, backward, clipping, update) into one program, called
        # without `strategy.run`. Under a distribution strategy XLA cannot place the
        # all-reduce and the update (`tfvariable_on_a_different_device`): it
        # compiles forward+backward only.
        self.whole_step_xla = train.jit_compile and strategies.is_default_strategy(self.strategy)
        self.gradient_transform = build_gradient_transform(
            experiment.optimizer, matrix_products=self.whole_step_xla)
        self.adversarial = adversarial.wrap(train.adversarial, self.state.variables)  # FGM
        self.stop_vote = strategies.StopVote(self.strategy)
        self._eval_step = progress.log_first_call(self._make_eval_step(), "eval step")
        self._compiled_forward_backward = (
            tf.function(self._forward_backward, jit_compile=True)
            if train.jit_compile and not self.whole_step_xla else self._forward_backward)
        self._train_loop = progress.log_first_call(self._make_train_loop(), "train step")

    def close(self):
        """Closes the event files and releases the run directory's lock (also
        done at exit)."""
        if getattr(self, "log", None) is not None:
            self.log.close()
        if self.lock is not None:
            self.lock.release()

    # ================================================================ train
    def train(self, stop_at: int | None = None) -> dict:
        """Trains up to `train.steps`, checkpointing and evaluating on schedule.

        Args:
            stop_at: int. Stop (with a checkpoint) at this step instead, as an
                interrupted run would; the schedule still spans `train.steps`.
                Defaults to None: train to `train.steps`.
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

    def _train_until(self, step: int, end: int):
        train, state = self.experiment.train, self.state
        iterator = iter(self._dataset(self.train_dir, training=True))
        log_every = train.log_every or train.steps_per_loop
        window = progress.Window()
        eta = progress.Eta(step, train.steps)
        if step == 0 and train.eval_every:  # the curve's starting point
            self._log_eval(0, self.evaluate())
        start = step
        while step < end:
            # A process's first call runs one step (it compiles; step 1 is logged).
            n = progress.chunk(step, end, train, first=step == start)
            try:
                totals = {k: float(v) for k, v in
                          self._train_loop(iterator, tf.constant(n, tf.int32)).items()}
            except DATA_ERRORS as e:
                raise_data_error(self.train_dir, e)
            if not all(np.isfinite(v) for v in totals.values()):
                step, iterator = self._handle_non_finite(step, step + n, totals)
                window = progress.Window()
                continue
            step += n
            window.add(totals, n, timed=step - n != start)
            if step % log_every == 0 or step == end or step == 1:
                record = window.record(
                    step, float(state.optimizer.learning_rate), task=self.experiment.task,
                    global_batch_size=train.global_batch_size,
                    seq_length=self.manifest.max_seq_length,
                    flops_per_step=self.flops_per_step, peak_flops=train.peak_tflops * 1e12)
                progress.log_train(record, train.steps, eta)
                self.log.train_record(record, self.state.variables)
                window = progress.Window()
            stopping = self.stop_vote(self._sigterm.received)
            if step % train.checkpoint_every == 0 or step == end or stopping:
                state.checkpoint.save(step)
            if stopping:
                preemption.stop(state.checkpoint, step)
            if train.eval_every and step % train.eval_every == 0 and step < train.steps:
                self._log_eval(step, self.evaluate())

    def _make_train_loop(self):
        """The compiled loop: `num_steps` updates per call, loss sums added up."""
        strategy, step = self.strategy, self.state.step
        keys = self.sum_keys + ("grad_norm",)
        if self.whole_step_xla:
            run_step = tf.function(self._replica_step, jit_compile=True)
        else:
            def run_step(batch):
                return strategy.run(self._replica_step, args=(batch,))

        return strategies.compiled_train_loop(strategy, step, keys, run_step)

    # ================================================================ one update
    def _replica_step(self, batch):
        """One optimizer update on this replica's share of the global batch."""
        state = self.state
        context = tf.distribute.get_replica_context()
        batch = dict(batch, example_index=topology.example_index(context, batch))
        # The global prediction counts, from the labels, before the forward pass: each
        # replica's loss is its sum over them, so summed gradients equal one device's.
        counts = losses.prediction_counts(self.experiment.task, batch, self.next_sentence)
        counts = {k: tf.maximum(context.all_reduce("SUM", v), 1.0) for k, v in counts.items()}
        sums, grads = self.adversarial(lambda: self._accumulated_forward_backward(batch, counts))
        grads = context.all_reduce("SUM", grads)
        grads, grad_norm = self._transform_gradients(grads)
        # Keras all-reduces (sums) again inside apply_gradients under a strategy.
        replicas = self.strategy.num_replicas_in_sync
        grads = [g / replicas for g in grads] if replicas > 1 else grads
        state.optimizer.apply_gradients(zip(grads, state.variables))
        if state.ema is not None:
            state.ema.update()
        return dict(sums, grad_norm=grad_norm / replicas)

    def _accumulated_forward_backward(self, batch, counts):
        """`_forward_backward` over `train.gradient_accumulation_steps` equal
        micro-batches of `batch`, sums added up (`topology.accumulate`)."""
        return topology.accumulate(lambda micro: self._compiled_forward_backward(micro, counts),
                                   batch, self.experiment.train.gradient_accumulation_steps)

    def _forward_backward(self, batch, counts):
        """Loss sums and the gradient of the loss normalised by the *global*
        prediction `counts`, for the variables the task trains (the part XLA
        compiles with `train.jit_compile`; the all-reduce and the update stay
        outside)."""
        model, state = self.state.model, self.state
        seed = dropout.step_seed(self.experiment.train.seed, state.step + state.data_offset)
        with tf.GradientTape() as tape:
            outputs = model(dict(batch, dropout_seed=seed), training=True)
            sums = losses.task_sums(self.experiment.task, outputs, batch)
            loss = losses.total_loss(sums, counts)
            scale = self._loss_scale()
            if scale is not None:
                loss = loss * scale  # float16: keep small gradients
        return sums, tape.gradient(loss, self.state.variables)

    def _loss_scale(self):
        """The dynamic loss scale under `mixed_float16` (None otherwise)."""
        return gradient_transforms.loss_scale(self.state.optimizer)

    def _transform_gradients(self, grads):
        """Clipping and the other `optimizer.gradient_transforms` on the
        all-reduced gradients, unscaled under a loss scale
        (`gradient_transforms.transform_scaled`): (gradients, global norm)."""
        return gradient_transforms.transform_scaled(self.gradient_transform, grads,
                                                    self.state.variables, self.state.optimizer)

    # ================================================================ evaluate
    def evaluate(self) -> dict:
        """Held-out loss, accuracy and perplexity over the whole eval split (or
        `eval_steps`), with the EMA weights when `optimizer.ema_decay` is set."""
        if not self.eval_dir:
            return {}
        limit = self.experiment.train.eval_steps
        totals = np.zeros(len(self.sum_keys))
        # A SIGTERM is acted on between batches (one worker: under
        # MultiWorkerMirroredStrategy the workers agree after the evaluation).
        sigterm = None if strategies.is_multi_worker(self.strategy) else self._sigterm
        with self.state.ema.swap() if self.state.ema is not None else contextlib.nullcontext():
            batches = iter(self._dataset(self.eval_dir, training=False))
            i = 0
            tracker = progress.EvalProgress(progress.eval_batches(
                self.eval_dir, self.experiment.train.global_batch_size, limit))
            while not (limit and i >= limit):
                if sigterm is not None and sigterm.received:
                    break
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except DATA_ERRORS as e:
                    raise_data_error(self.eval_dir, e)
                totals += self._eval_step(batch).numpy()
                i += 1
                tracker.update(i)
        if sigterm is not None and sigterm.received:
            preemption.stop(self.state.checkpoint, int(self.state.step.numpy()))
        result = progress.metrics(dict(zip(self.sum_keys, totals)), self.experiment.task)
        result["predictions"] = int(totals[self.sum_keys.index("weight")])
        return {f"eval_{k}": v for k, v in result.items()}

    def _make_eval_step(self):
        """The compiled evaluation step (traced once per trainer)."""
        strategy, model, task = self.strategy, self.state.model, self.experiment.task

        def replica_sums(batch):
            sums = losses.task_sums(task, model(batch, training=False), batch)
            return tf.stack([sums[k] for k in self.sum_keys])

        @tf.function
        def eval_step(batch):
            per_replica = strategy.run(replica_sums, args=(batch,))
            return strategy.reduce("SUM", per_replica, axis=None)

        return eval_step

    # ================================================================ helpers
    def _dataset(self, data_dir: str, training: bool):
        """The distributed dataset of `data_dir`; training resumes at the data
        position: every step consumed one global batch (plus any batches
        skipped after a non-finite step)."""
        train, data = self.experiment.train, self.experiment.data
        skip = int(self.state.step.numpy() + self.state.data_offset.numpy()) if training else 0

        def dataset_fn(context):
            return data_input.make_replica_dataset(
                data_dir, train.global_batch_size, context, training=training,
                seed=train.seed, shuffle_buffer=data.shuffle_buffer, skip_batches=skip,
                shard_by=data.shard_by, masked_lm_prob=data.masked_lm_prob if training else None)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

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
        progress.log_eval(step, result)
        eval_samples.write(self, step)  # decoded predictions: TensorBoard's Text tab
        self.log.eval_record(step, result)
