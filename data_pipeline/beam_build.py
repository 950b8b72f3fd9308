"""The data build's units of work as an Apache Beam pipeline.

`builder.build(..., runner="DataflowRunner")` (or DirectRunner, FlinkRunner,
SparkRunner; `python -m data_pipeline.build --runner=...`) runs this
pipeline instead of the local process pool:

    read units (builder.read_units, one reader)  ── Reshuffle ──►
    builder.run_unit per unit (tokenize, pack, mask: the local builder's
    function)  ──►  (split, shard) ← shuffle.record_keys  ── GroupByKey ──►
    shuffle.write_shard per shard (sorted by key) + its record count

Shard assignment and in-shard order come from `shuffle`, as in the local
builder, so the shards are the same bytes; `builder.build` then writes the
manifests (from the counts) and publishes the splits, manifest last. The
shards are written under the build's temporary prefix
(OUTPUT_DIR/.tmp-*), which a failed run removes and names.

The input is read by one worker (reading is cheap next to tokenizing); the
units, their records and the shards are spread over all workers.
"""

import os

import tensorflow as tf
from absl import logging

from data_pipeline import builder
from data_pipeline import records
from data_pipeline import shuffle
from data_pipeline import tasks

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
_COUNTS = ".counts"  # per-shard record counts, beside the splits
_METRICS = "data_build"


def _beam():
    try:
        import apache_beam  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ValueError(
            "--runner needs Apache Beam, which is not installed "
            f"({e}). Install it: pip install -e '.[beam]' (its own venv: "
            "Beam needs protobuf < 7), or drop --runner to build with "
            "this machine's process pool.") from None
    return apache_beam


def check_runner(runner: str, options) -> None:
    """ValueError naming the flag for an unknown runner, options that are
    not `--name[=value]`, or Beam missing."""
    if runner not in RUNNERS:
        raise ValueError(f"--runner must be one of {list(RUNNERS)}. "
                         f"Received: runner={runner!r}")
    for option in options:
        if not str(option).startswith("--"):
            raise ValueError(f"--beam_option must look like --name=value. "
                             f"Received: beam_option={option!r}")
    _beam()


def _unit_fn(beam):
    class _Unit(beam.DoFn):
        """One unit of work -> ((split, shard), [(key, record)]) pieces."""

        def __init__(self, plan):
            super().__init__()
            self.plan = plan
            self.tokenizer = None
            self.documents = beam.metrics.Metrics.counter(_METRICS, "documents")
            self.one_sentence = beam.metrics.Metrics.counter(
                _METRICS, "one_sentence_documents")

        def setup(self):
            self.tokenizer = self.plan.load_tokenizer()

        def process(self, item):
            documents, first, unit = item
            out = builder.run_unit(self.plan, self.tokenizer, documents,
                                   first, unit)
            self.documents.inc(out["documents"])
            self.one_sentence.inc(out["one_sentence_documents"])
            for split_index, name in enumerate(tasks.SPLITS):
                if name not in self.plan.shards or not len(out[name]):
                    continue
                keys = shuffle.record_keys(self.plan.seed, split_index, unit,
                                           len(out[name]))
                pieces = shuffle.by_shard(keys, out[name],
                                          self.plan.shards[name])
                for shard, entries in sorted(pieces.items()):
                    yield (name, shard), entries

    return _Unit


def _write_shard(item, plan, tmp_root):
    """Sorts and writes one shard; records its count beside the splits."""
    (name, shard), groups = item
    entries = [entry for group in groups if group for entry in group]
    num = plan.shards[name]
    path = os.path.join(tmp_root, name,
                        records.shard_name(shard, num, plan.compression))
    count = shuffle.write_shard(path, entries, plan.compression)
    with tf.io.gfile.GFile(os.path.join(tmp_root, _COUNTS,
                                        f"{name}-{shard:05d}"), "w") as f:
        f.write(str(count))
    yield name, count


def _counter(result, name: str):
    """A committed counter of the finished pipeline (None if the runner
    reports no metrics)."""
    try:
        from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=import-outside-toplevel
        found = result.metrics().query(
            MetricsFilter().with_namespace(_METRICS).with_name(name))
        return sum(c.committed or 0 for c in found["counters"])
    except Exception:  # pylint: disable=broad-except  (metrics are optional)
        return None


def write_splits(plan: builder.BuildPlan, tmp_root: str, runner: str,
                 options=()) -> builder.SplitsWritten:
    """Runs the pipeline; the shards land in `tmp_root/<split>/`.

    Args:
        plan: builder.BuildPlan. What the units need.
        tmp_root: str. The build's temporary prefix (local path or URL),
            holding an empty directory per split.
        runner: str. One of `RUNNERS`.
        options: tuple. Further pipeline options (`--project=...`).

    Raises:
        ValueError: the pipeline failed (its error, and the temporary prefix
            that `builder.build` removes, are named).
    """
    beam = _beam()
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
    logging.info("Beam %s: shards are written under %s (removed when the "
                 "build ends; delete it if this process is killed).", runner,
                 tmp_root)
    tf.io.gfile.makedirs(os.path.join(tmp_root, _COUNTS))
    pipeline_options = PipelineOptions([f"--runner={runner}", *options])
    placeholders = [((name, shard), None) for name, num in plan.shards.items()
                    for shard in range(num)]
    try:
        pipeline = beam.Pipeline(options=pipeline_options)
        pieces = (pipeline
                  | "Start" >> beam.Create([None])
                  | "ReadUnits" >> beam.FlatMap(
                      lambda _, p: builder.read_units(p), plan)
                  | "Spread" >> beam.Reshuffle()
                  | "RunUnits" >> beam.ParDo(_unit_fn(beam)(plan)))
        every_shard = pipeline | "EveryShard" >> beam.Create(placeholders)
        _ = ((pieces, every_shard)
             | "Merge" >> beam.Flatten()
             | "ByShard" >> beam.GroupByKey()
             | "WriteShards" >> beam.FlatMap(_write_shard, plan, tmp_root))
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as e:  # pylint: disable=broad-except  (any worker error)
        # Runners put the worker's traceback in the message: its last line
        # is the error.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        cause = lines[-1] if lines else type(e).__name__
        raise ValueError(
            f"The Beam pipeline (--runner={runner}) failed: {cause}. "
            "No manifest was written; "
            f"the partial shards under {tmp_root} are removed (delete that "
            "prefix if it remains).") from e
    shards = {}
    for name, num in plan.shards.items():
        counts = []
        for shard in range(num):
            path = os.path.join(tmp_root, _COUNTS, f"{name}-{shard:05d}")
            with tf.io.gfile.GFile(path) as f:
                counts.append(int(f.read()))
        shards[name] = ([records.shard_name(s, num, plan.compression)
                         for s in range(num)], counts)
    return builder.SplitsWritten(
        shards, _counter(result, "documents"),
        _counter(result, "one_sentence_documents") or 0)
