"""The fine-tuning loop: the pretraining trainer's pieces (strategy, run
checkpoints, lock, metrics log, optimizers, gradient transforms, SIGTERM
handling) around a classifier.

One update: every replica computes its rows' loss sum over the *global*
batch size (with `train.gradient_accumulation_steps`, over consecutive
micro-batches of its rows, gradients summed: `topology.accumulate`), the
gradients are all-reduced, clipped after the all-reduce and applied
(`optimizer.apply_gradients` all-reduces again: divided by the replicas
first), so any strategy gives one device's numbers. Dropout masks (encoder
and classifier) are keyed as in pretraining on (seed, step, layer, global
example index, position), so they too do not depend on the replica count or
the accumulation split. `mixed_float16` multiplies the loss by a dynamic loss
scale (`keras.optimizers.LossScaleOptimizer`, as pretraining's); a step whose
scaled gradients overflow is skipped by that optimizer, which lowers the
scale, and is counted, not treated as a failure. The data position is the
step: `finetune_dataset` keys each epoch's order on the seed and skips the
batches already consumed, so a resumed run (killed at any moment) ends
bit-identical to an uninterrupted one.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data_pipeline import input as data_input
from data_pipeline import labelled
from pretraining import adversarial, checkpoints, dropout, metrics_log, preemption, progress
from pretraining import run_config, run_lock, topology
from pretraining import strategy as strategies
from pretraining.finetune import losses, multitask, results
from pretraining.finetune.config import FinetuneExperiment
from pretraining.finetune.init_source import InitSource, assign_encoder, assign_head
from pretraining.finetune.model import build_classifier
from pretraining.flops import mlm_train_flops
from pretraining.model import initialize_weights
from pretraining.optimizers import build_gradient_transform, create_optimizer
from pretraining.optimizers import gradient_transforms


@dataclasses.dataclass
class TaskData:
    """One task's splits as `data_pipeline.labelled.encode` arrays.

    Args:
        name: str. The task's name. Required.
        spec: `labelled.LabelSpec`. Task and label list. Required.
        train: dict. Train arrays (with `label`). Required.
        eval: dict or None. Dev arrays (with `label`). Defaults to None.
        test: dict or None. Arrays to predict. Defaults to None.
        test_texts: list or None. The test texts, for `predictions.jsonl`.
            Defaults to None.
    """

    name: str
    spec: labelled.LabelSpec
    train: dict
    eval: dict | None = None
    test: dict | None = None
    test_texts: list | None = None


class FinetuneTrainer:
    """Fine-tunes a classifier under a strategy and writes `model_dir`.

    Args:
        experiment: `FinetuneExperiment`, with its `model` resolved. Required.
        model_dir: str. Run directory: checkpoints, `config.json`,
            `labels.json`, `metrics.jsonl`, `eval_results.json`, `best/`,
            `predictions.jsonl`, TensorBoard events. Required.
        task: `TaskData`, or a list of them (`finetune.tasks`: one head per
            task, the task id as the Conditional LayerNorm condition). Required.
        strategy: `tf.distribute.Strategy`. Defaults to None: the default one.
        init: `InitSource` or None. The encoder to start from (unless
            `finetune.from_scratch`). Defaults to None: random weights.
        overwrite: bool. Delete the run directory's old run first. Defaults
            to False.
    """

    def __init__(self, experiment: FinetuneExperiment, model_dir: str, task: TaskData,
                 strategy=None, *, init: InitSource | None = None, overwrite: bool = False):
        self.experiment, self.model_dir = experiment, model_dir
        self.tasks = list(task) if isinstance(task, (list, tuple)) else [task]
        self.multi_task = len(self.tasks) > 1
        specs = [t.spec for t in self.tasks]
        self.strategy = strategy or tf.distribute.get_strategy()
        train, finetune, model_config = experiment.train, experiment.finetune, experiment.model
        run_config.check_model_dir(model_dir)
        check_experiment(experiment, self.strategy.num_replicas_in_sync)
        self.select_by = "mean" if self.multi_task else finetune.metric({"task": specs[0].task})
        self.is_chief, worker_id = strategies.chief_and_worker(self.strategy)
        self.log = metrics_log.MetricsLog(model_dir, enabled=self.is_chief)
        tf.io.gfile.makedirs(model_dir)
        self.lock = run_lock.RunLock(model_dir) if self.is_chief else None
        try:
            results.check_resume(model_dir, experiment, specs, overwrite)
            if overwrite and self.is_chief:
                run_config.clear(model_dir)
            strategies.log_batch_arithmetic(self.strategy, train.global_batch_size,
                                            train.gradient_accumulation_steps)
            keras.utils.set_random_seed(train.seed)
            policy = train.mixed_precision
            with self.strategy.scope():
                num_labels = [s.num_labels for s in specs] if self.multi_task \
                    else specs[0].num_labels
                self.model = build_classifier(model_config, num_labels,
                                              finetune.classifier_dropout, train.seed, policy)
                initialize_weights(self.model, train.seed)
                self.optimizer = create_optimizer(experiment.optimizer, train.steps,
                                                  self.model.trainable_variables)
                if policy == "mixed_float16":  # as pretraining's (train_state.build_state)
                    self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
                self.optimizer.build(self.model.trainable_variables)
                self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                self.checkpoint = checkpoints.RunCheckpoint(
                    model_dir, model=self.model, optimizer=self.optimizer, step=self.step,
                    max_to_keep=train.keep_checkpoints, worker_id=worker_id)
            self.variables = self.model.trainable_variables
            # Resume order: this run's own checkpoint → --init (weights) → scratch.
            self.resumed_from = self.checkpoint.restore_or_initialize()
            if self.resumed_from is None and init is not None and not finetune.from_scratch:
                assign_encoder(self.model.encoder, init)
                assign_head(self.model, init, specs)
            elif self.resumed_from is None:
                logging.info("Fine-tuning from random weights (%s).", "--from_scratch"
                             if finetune.from_scratch else "no --init")
            self.best = results.BestCheckpoint(model_dir, self.select_by, self.is_chief)
            self.log.drop_partial_line()
            if self.is_chief:
                results.write_run_files(model_dir, experiment, specs,
                                        [t.name for t in self.tasks])
            # A resume on other replicas or accumulation steps says so (topology.json).
            topology.log_resume(model_dir, self.strategy, train, self.resumed_from, self.is_chief)
            # The global norm as matrix-vector products where XLA compiles the update.
            self.gradient_transform = build_gradient_transform(
                experiment.optimizer, matrix_products=train.jit_compile
                and strategies.is_default_strategy(self.strategy))
            self.adversarial = adversarial.wrap(finetune.adversarial, self.variables)
            self.objective = multitask.Objective(specs, finetune.multi_label_loss)
            self.train_arrays = (multitask.merge_train(
                self.tasks, [s["weight"] for s in finetune.task_specs()], train.seed)
                if self.multi_task else self.tasks[0].train)
            # The encoder's matmuls (the masked-LM count without a head), for MFU.
            self.flops_per_step = mlm_train_flops(model_config, train.global_batch_size,
                                                  finetune.max_seq_length, 0)
            self.stop_vote = strategies.StopVote(self.strategy)
            self._train_loop = progress.log_first_call(self._make_train_loop(), "train step")
            self._predict_step = self._make_predict_step()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Closes the event files and releases the lock."""
        self.log.close()
        if self.lock is not None:
            self.lock.release()

    # ================================================================ train
    def train(self, stop_at: int | None = None) -> dict:
        """Trains to `train.steps` (or `stop_at`, with a checkpoint), evaluating
        every `train.eval_every` steps and at the end; then predicts
        `--test_file` with the best checkpoint. Returns the summary."""
        train = self.experiment.train
        step = int(self.step.numpy())
        end = min(stop_at, train.steps) if stop_at else train.steps
        with preemption.SigtermFlag() as sigterm:
            if step < end:
                self._train_until(step, end, sigterm)
            step = int(self.step.numpy())
            summary = {"step": step, **self.log.last_train_record()}
            result = self._evaluate_and_keep(step)
            summary.update({f"eval_{k}": v for k, v in result.items()})
        if self.best.step is not None:
            summary.update(best_step=self.best.step, best_metric=self.select_by,
                           best_value=self.best.value)
        if step >= train.steps and any(t.test is not None for t in self.tasks):
            summary["predictions"] = self.predict_test()
        self.log.write_summary(summary)
        return summary

    def _train_until(self, step: int, end: int, sigterm):
        train = self.experiment.train
        iterator = iter(self._dataset(self.train_arrays, training=True, skip=step))
        window, eta, start = progress.Window(), progress.Eta(step, train.steps), step
        log_every = train.log_every or train.steps_per_loop
        while step < end:
            n = progress.chunk(step, end, train, first=step == start)
            totals = {k: float(v) for k, v in
                      self._train_loop(iterator, tf.constant(n, tf.int32)).items()}
            overflow = int(round(totals.pop("overflow")))
            if overflow:
                logging.info("mixed_float16: %d of steps %d-%d overflowed at the loss scale: "
                             "skipped by the loss-scale optimizer, which lowered the scale "
                             "(now %g).", overflow, step + 1, step + n,
                             float(gradient_transforms.loss_scale(self.optimizer)))
            if not all(np.isfinite(v) for v in totals.values()):
                raise FloatingPointError(
                    f"Non-finite loss or gradient norm between steps {step} and {step + n}; "
                    f"the last good checkpoint is kept: {self.checkpoint.latest}. Lower "
                    "optimizer.learning_rate or check the labels.")
            step += n
            window.add(totals, n, timed=step - n != start)
            if step % log_every == 0 or step == end or step == 1:
                record = window.record(
                    step, float(self.optimizer.learning_rate), task="finetune",
                    global_batch_size=train.global_batch_size,
                    seq_length=self.experiment.finetune.max_seq_length,
                    flops_per_step=self.flops_per_step, peak_flops=train.peak_tflops * 1e12)
                record.pop("perplexity", None)
                if self.multi_task or self.tasks[0].spec.task != "single_label":
                    record.pop("accuracy", None)  # (the dev metrics say more)
                progress.log_train(record, train.steps, eta)
                self.log.train_record(record)
                window = progress.Window()
            stopping = self.stop_vote(sigterm.received)
            if step % train.checkpoint_every == 0 or step == end or stopping:
                self.checkpoint.save(step)
            if stopping:
                preemption.stop(self.checkpoint, step)
            if train.eval_every and step % train.eval_every == 0 and step < train.steps:
                self._evaluate_and_keep(step)

    def _make_train_loop(self):
        """`num_steps` updates per call. `train.jit_compile`, as in pretraining:
        XLA compiles the whole step on one device, forward+backward only
        under a distribution strategy."""
        strategy, step = self.strategy, self.step
        keys = ("loss_sum", "correct", "weight", "grad_norm", "overflow")
        jit = self.experiment.train.jit_compile
        if jit and strategies.is_default_strategy(strategy):
            run_step = tf.function(self._replica_step, jit_compile=True)
        else:
            if jit:
                self._forward_backward = tf.function(self._forward_backward, jit_compile=True)

            def run_step(batch):
                return strategy.run(self._replica_step, args=(batch,))

        return strategies.compiled_train_loop(strategy, step, keys, run_step)

    def _replica_step(self, batch):
        """One update on this replica's rows of the global batch (with
        `finetune.adversarial`: the FGM pass of `pretraining.adversarial`
        around the accumulated micro-batches)."""
        context = tf.distribute.get_replica_context()
        batch = dict(batch, example_index=topology.example_index(context, batch))
        k = self.experiment.train.gradient_accumulation_steps
        sums, grads = self.adversarial(
            lambda: topology.accumulate(self._forward_backward, batch, k))
        grads = context.all_reduce("SUM", grads)
        grads, grad_norm = gradient_transforms.transform_scaled(
            self.gradient_transform, grads, self.variables, self.optimizer)
        replicas = self.strategy.num_replicas_in_sync
        grads = [g / replicas for g in grads] if replicas > 1 else grads
        self.optimizer.apply_gradients(zip(grads, self.variables))
        overflow = tf.zeros([])
        if gradient_transforms.loss_scale(self.optimizer) is not None:
            # Skipped by the loss-scale optimizer (which lowers the scale): counted.
            finite = tf.math.is_finite(grad_norm)
            overflow = 1.0 - tf.cast(finite, tf.float32)
            grad_norm = tf.where(finite, grad_norm, 0.0)
        return dict(sums, weight=tf.reduce_sum(batch["weight"]), grad_norm=grad_norm / replicas,
                    overflow=overflow / replicas)

    def _forward_backward(self, batch):
        """This replica's (micro-)batch's loss sum and correct count, and the
        gradients of the loss sum over the *global* batch size (times the
        loss scale under `mixed_float16`). Dropout is keyed on the run seed,
        the step and each row's global example index (`batch["example_index"]`)."""
        seed = dropout.step_seed(self.experiment.train.seed, self.step)
        with tf.GradientTape() as tape:
            outputs = self.model(dict(batch, dropout_seed=seed), training=True)
            loss_sum, correct = self.objective(batch, outputs)
            loss = loss_sum / float(self.experiment.train.global_batch_size)
            scale = gradient_transforms.loss_scale(self.optimizer)
            if scale is not None:
                loss = loss * tf.cast(scale, loss.dtype)
        return {"loss_sum": loss_sum, "correct": correct}, tape.gradient(loss, self.variables)

    # ================================================================ evaluate
    def outputs(self, arrays: dict, index: int = 0) -> np.ndarray:
        """Head `index`'s logits for every row of `arrays`, in order."""
        if self.multi_task:
            arrays = multitask.with_task({k: v for k, v in arrays.items() if k != "label"},
                                         index, self.tasks[index].spec, 1)
        key = f"logits_{index}" if self.multi_task else "logits"
        found = [self._predict_step(batch)[key].numpy()
                 for batch in self._dataset(arrays, training=False)]
        return np.concatenate(found)[:len(arrays["input_ids"])]

    def _make_predict_step(self):
        strategy, model = self.strategy, self.model

        @tf.function
        def predict_step(batch):
            logits = strategy.run(lambda b: model(b, training=False), args=(batch,))
            return {k: strategy.gather(v, axis=0) for k, v in logits.items()}

        return predict_step

    def evaluate(self) -> dict:
        """Each task's metrics on its dev split ({} without one); several
        tasks: `<name>/<metric>` and `mean`, the mean of their `select_by`."""
        from pretraining.finetune import metrics
        result, selected = {}, []
        for i, task in enumerate(self.tasks):
            if task.eval is None:
                continue
            logits = self.outputs(task.eval, i)
            figures = {"loss": float(losses.loss_sum(
                task.spec.task, task.eval["label"], logits, None,
                self.experiment.finetune.multi_label_loss)) / len(logits),
                **metrics.compute_metrics(task.spec.task, task.eval["label"], logits),
                "examples": len(logits)}
            if not self.multi_task:
                return figures
            selected.append(figures[self.experiment.finetune.metric(
                {"task": task.spec.task, **self._task_fields(i)})])
            result.update({f"{task.name}/{k}": v for k, v in figures.items()})
        if selected:
            result["mean"] = float(np.mean(selected))
        return result

    def _task_fields(self, index: int) -> dict:
        return self.experiment.finetune.task_specs()[index]

    def _evaluate_and_keep(self, step: int) -> dict:
        result = self.evaluate()
        if not result:
            return result
        logging.info("Eval at step %d: %s", step, "  ".join(
            f"{k} {v:.4f}" for k, v in result.items() if not k.endswith("examples")))
        self.log.eval_record(step, result)
        results.append_eval_results(self.model_dir, step, result, self.is_chief,
                                    self.experiment.finetune.eval_file)
        self.best.update(step, result, self.model)
        return result

    def predict_test(self) -> str:
        """Writes `predictions.jsonl` (several tasks: `predictions_<name>.jsonl`)
        for the test splits, with the best checkpoint's weights when there is
        one; returns the (last) path."""
        path = ""
        with self.best.weights_in(self.model):
            for i, task in enumerate(self.tasks):
                if task.test is None:
                    continue
                name = f"predictions_{task.name}.jsonl" if self.multi_task else None
                path = results.write_predictions(self.model_dir, task.spec,
                                                 self.outputs(task.test, i), task.test_texts,
                                                 self.is_chief, name)
        return path

    # ================================================================ data
    def _dataset(self, arrays: dict, training: bool, skip: int = 0):
        """The distributed batches of `arrays`: each replica gets its rows of
        every global batch, so the replicas together see one device's."""
        train = self.experiment.train
        size = train.global_batch_size

        def dataset_fn(context):
            dataset = labelled.finetune_dataset(arrays, size, training=training,
                                                seed=train.seed, skip_batches=skip)
            return data_input.replica_rows(dataset, size, context)

        return self.strategy.distribute_datasets_from_function(dataset_fn)


def check_experiment(experiment: FinetuneExperiment, replicas: int) -> None:
    """Refuses what fine-tuning cannot run, naming the field and the fix."""
    train, finetune, model = experiment.train, experiment.finetune, experiment.model
    if finetune.max_seq_length > model.max_position_embeddings:
        raise ValueError(
            f"finetune.max_seq_length={finetune.max_seq_length} is above the model's "
            f"max_position_embeddings={model.max_position_embeddings}: pass "
            f"--max_seq_length={model.max_position_embeddings} or less.")
    split = replicas * train.gradient_accumulation_steps
    if train.global_batch_size % split:
        raise ValueError(
            f"train.global_batch_size={train.global_batch_size} must divide by the {replicas} "
            f"replica(s) times train.gradient_accumulation_steps="
            f"{train.gradient_accumulation_steps}: pick a multiple of {split}.")
