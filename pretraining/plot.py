"""Draw a run's curves to a PNG: `python -m pretraining.plot RUN [--output=FILE]`.

For a user without TensorBoard: reads `RUN/metrics.jsonl` (the logged train
windows and the evaluations) and draws the loss and the accuracy
(`masked_lm_accuracy` for mlm, `accuracy` for lm/seq2seq), train and eval, against
the step. Writes `RUN/curves.png` unless `--output` says where, and prints the
path. Needs matplotlib, an optional dependency (`pip install matplotlib`, or
the package's `plot` extra); TensorFlow is not imported.
"""

import json
import os

from absl import flags

from pretraining import cli

ACCURACY_KEYS = ("masked_lm_accuracy", "accuracy")


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("output", "", "PNG to write. Defaults to RUN/curves.png.")


def read_curves(run_dir: str) -> dict:
    """{"train_loss": [(step, value), ...], "eval_loss": ..., "train_accuracy": ...,
    "eval_accuracy": ...} from `run_dir/metrics.jsonl` (only the curves it has)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ValueError(f"RUN={run_dir!r} has no metrics.jsonl: pass the --model_dir of a "
                         "run that has logged at least one step.")
    curves = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a cut last line (a kill mid-write)
                break
            raise ValueError(f"{path} line {number} is not JSON: fix or remove that "
                             "line.") from None
        split = "eval" if any(k.startswith("eval_") for k in record) else "train"
        prefix = "eval_" if split == "eval" else ""
        for name in ("loss",) + ACCURACY_KEYS:
            if prefix + name in record:
                curve = "accuracy" if name in ACCURACY_KEYS else name
                curves.setdefault(f"{split}_{curve}", []).append(
                    (record["step"], float(record[prefix + name])))
    if not curves:
        raise ValueError(f"{path} holds no loss or accuracy record yet: plot it once the "
                         "run has logged a step.")
    return {name: sorted(points) for name, points in curves.items()}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("python -m pretraining.plot needs matplotlib, which is not "
                         "installed: pip install matplotlib (or the plot extra: pip install "
                         "-e '.[plot]').") from None
    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot
    return pyplot


def plot(run_dir: str, output: str = "") -> str:
    """Writes the loss and accuracy curves of `run_dir` to `output` (default
    `run_dir/curves.png`) and returns its path."""
    curves = read_curves(run_dir)
    pyplot = _pyplot()
    output = output or os.path.join(run_dir, "curves.png")
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4))
    for axis, quantity in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "-"), ("eval", "o-")):
            points = curves.get(f"{split}_{quantity}")
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, style, label=split, markersize=3)
        axis.set_xlabel("step")
        axis.set_title(quantity)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.suptitle(os.path.basename(os.path.normpath(run_dir)))
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=100)
    finally:
        pyplot.close(figure)
    return output


def main(argv):
    if len(argv) != 2:
        raise ValueError(f"Expected one RUN directory, received {len(argv) - 1} arguments "
                         f"{argv[1:]}: python -m pretraining.plot RUN [--output=FILE].")
    print(plot(argv[1], flags.FLAGS.output))


if __name__ == "__main__":
    cli.run(main, define_flags)
