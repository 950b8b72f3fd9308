"""Text samples of an evaluation, for TensorBoard's Text tab.

At each evaluation the model predicts a few eval examples and they are
written, decoded as `python -m data_pipeline.inspect` prints records, under
the tag `eval/samples` of the run's `eval/` events: for `mlm` the masked
positions read `[original]` where the model's top prediction is right and
`[original->predicted]` where it is wrong; for `lm` and `seq2seq` each
predicted token (the next token, teacher-forced: the greedy choice given the
true prefix) reads the same way. One forward pass on a few examples, outside
the compiled loop; not on TPU (a pass outside the TPU's compiled functions).
"""

import itertools
import os

import numpy as np
import tensorflow as tf
from absl import logging

from data_pipeline import input as data_input
from data_pipeline import tokenization
from data_pipeline.inspect import format_example

NUM_EXAMPLES = 3
_LEGEND = {"mlm": "masked positions: [original] predicted right, [original->predicted] wrong",
           "lm": "next-token predictions: [true] right, [true->predicted] wrong"}


def _tokenizer(manifest):
    if not os.path.isfile(manifest.tokenizer_file):
        return None  # ids, as data_pipeline.inspect prints them without the file
    options = {k: v for k, v in manifest.tokenizer_options.items()
               if k in ("do_lower_case", "strip_accents")}
    return tokenization.load_tokenizer(manifest.tokenizer_file, **options)


def predicted_examples(model, batch: dict, task: str) -> list[dict]:
    """The examples of `batch` (NumPy) as `format_example` reads them, with
    the model's greedy predictions in place of the tokens it predicts."""
    outputs = model({k: tf.constant(v) for k, v in batch.items()}, training=False)
    examples = []
    for i in range(len(batch["input_ids"])):
        example = {k: np.asarray(v[i]) for k, v in batch.items()}
        ids = example["input_ids"].copy()
        if task == "mlm":
            predicted = np.argmax(np.asarray(outputs["masked_lm_logits"][i]), axis=-1)
            k = int(example["masked_lm_weights"].sum())
            ids[example["masked_lm_positions"][:k]] = predicted[:k]
        else:
            predicted = np.argmax(np.asarray(outputs["lm_logits"][i]), axis=-1)
            n = int(example["input_mask"].sum())
            start = 1
            if task == "seq2seq":  # the target: after the first segment
                start = max(int(np.argmax(example["segment_ids"][:n] > 0)), 1)
            positions = np.arange(start, n)
            example["masked_lm_positions"] = positions
            example["masked_lm_ids"] = example["input_ids"][positions]
            example["masked_lm_weights"] = np.ones(len(positions))
            ids[positions] = predicted[positions - 1]
        example["input_ids"] = ids
        examples.append(example)
    return examples


def text(model, eval_dir: str, task: str, num_examples: int = NUM_EXAMPLES) -> str:
    """The samples as Markdown: one line per example."""
    manifest = data_input.read_manifest(eval_dir)
    examples = list(itertools.islice(data_input.iterate_numpy(
        eval_dir, batch_size=num_examples, mask=manifest.masking == "dynamic"), num_examples))
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != "word_starts"}
    tokenizer = _tokenizer(manifest)
    lines = [f"*{_LEGEND['mlm' if task == 'mlm' else 'lm']}*"]
    for i, example in enumerate(predicted_examples(model, batch, task)):
        lines.append(f"{i}. `{format_example(example, tokenizer).splitlines()[0]}`")
    return "\n\n".join(lines)


def write(trainer, step: int) -> None:
    """Writes the samples of `step` to the `trainer`'s log (a `MetricsLog`):
    once per step (not again when a finished run is re-run), chief only, not
    on TPU."""
    log = trainer.log
    if (not log.enabled or isinstance(trainer.strategy, tf.distribute.TPUStrategy)
            or step in {r["step"] for r in log.eval_records()}):
        return
    try:
        log.text("eval", step, "samples",
                 text(trainer.state.model, trainer.eval_dir, trainer.experiment.task))
    except (OSError, ValueError, tf.errors.OpError) as e:  # samples are an extra
        logging.warning("Eval text samples at step %d not written: %s", step, e)
