"""The tf.data pipeline the trainer reads shards with.

    dataset = make_dataset("data/train", batch_size=32, seed=1)

Elements are dicts of int32 `input_ids`, `input_mask`, `segment_ids` `[B, L]`,
`masked_lm_positions`, `masked_lm_ids` `[B, P]`, float32 `masked_lm_weights`
`[B, P]` (and int32 `next_sentence_labels` `[B, 1]` when present), all with
static shapes. With `masking: dynamic` records (`word_starts` on disk) the
masks are drawn here per batch (`dynamic_masking`) and the elements are the
same. `seq2seq` data yields `input_ids, input_mask, segment_ids`; `lm` data
`input_ids, input_mask`. Records of a conditioned build (manifest
`condition`) add `condition`: int32 `[B, 1]` class ids or float32
`[B, size]` vectors, for every task.
"""

import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from data_pipeline import dynamic_masking
from data_pipeline import features
from data_pipeline import integrity
from data_pipeline import vocab_layout

_MAX_CYCLE_LENGTH = 8
# Records taken from one file in a row by the interleave, and the unit of the
# record shuffle: runs of 16 records are batched, the chunks shuffled, then
# rebatched to the batch size. The build already shuffled the records of each
# shard (the builder's 100,000-record shuffle buffer; Google's tool
# shuffles all its instances and its trainer then shuffles 100 records), so a
# chunk is a random set of records; what stays fixed across epochs is which
# 16 records share a batch (as with fairseq's fixed batches), while the order
# of the chunks and files, and dynamic masks, change every epoch. Per record,
# tf.data's shuffle and batch cost a few microseconds each, which on one core
# was a third of the pipeline; per chunk they cost a sixteenth of that.
_BLOCK_LENGTH = 16

# Data checks, exported here for the trainer (see `data_pipeline.integrity`):
# `check_shards` at start (stat only), `find_bad_record`/`explain_error` after
# the pipeline raised a `tf.errors.OpError`, `check_same_tokenizer` between
# manifests.
check_shards = integrity.check_shards
find_bad_record = integrity.find_bad_record
explain_error = integrity.explain_error
check_same_tokenizer = integrity.check_same_tokenizer
check_resume_tokenizer = integrity.check_resume_tokenizer
# The dynamic-masking rate of a split (`data.masked_lm_prob` checked against
# its manifest), for the trainer's start-up checks.
masking_rate = dynamic_masking.masking_rate


def read_manifest(data_dir: str) -> features.Manifest:
    """Reads `data_dir/manifest.json` (ValueError if missing or invalid).

    Args:
        data_dir: str. A split directory (`.../train` or `.../eval`).
    """
    return features.Manifest.read(data_dir)


def _read_file(path, count, compression):
    """The records of one shard, asserting the manifest's `count` of them."""
    return tf.data.TFRecordDataset(path, compression_type=compression).apply(
        tf.data.experimental.assert_cardinality(count))


def _parse_fn(manifest: features.Manifest, seed: int = 0,
              pipeline_id: int = 0, mask: bool = True,
              masked_lm_prob: float | None = None):
    """Parses a batch of records; masks dynamic-masking records when `mask`,
    at `masked_lm_prob` (None: the manifest's rate).

    The returned function takes (batch index, serialized batch)."""
    spec = features.feature_spec(manifest)
    masker = None
    if mask and manifest.masking == "dynamic":
        masker = dynamic_masking.DynamicMasker(
            vocab_layout.VocabLayout.from_manifest(manifest),
            manifest.max_predictions_per_seq,
            dynamic_masking.masking_rate(manifest, masked_lm_prob),
            manifest.whole_word_masking)

    def parse(index, serialized):
        parsed = tf.io.parse_example(serialized, spec)
        parsed = {name: tf.cast(value, tf.int32) if value.dtype == tf.int64
                  else value for name, value in parsed.items()}
        if masker is not None:
            parsed = masker(parsed, dynamic_masking.batch_seed(
                seed, pipeline_id, index))
        return parsed
    return parse


def _sharding(manifest, num_files, input_context):
    """Returns ("none" | "files" | "records", num_pipelines, pipeline_id)."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return "none", 1, 0
    n = input_context.num_input_pipelines
    i = input_context.input_pipeline_id
    if manifest.num_examples < n:
        raise ValueError(
            f"Data in {manifest.split!r} split has num_examples="
            f"{manifest.num_examples}, fewer than num_input_pipelines={n}: "
            "every input pipeline needs at least one example. Build more data.")
    if num_files >= n and num_files % n == 0:
        return "files", n, i
    return "records", n, i


def _stateless_order(n, seed: int, stream):
    """A permutation of `range(n)` that depends on `seed` and `stream` (an
    int64 tensor) only: not on TensorFlow's global seed, unlike
    `Dataset.shuffle`, whose order also depends on `tf.random.set_seed`."""
    key = tf.stack([tf.constant(seed, tf.int64), stream])
    return tf.argsort(tf.random.stateless_uniform([n], seed=key))


def _shuffled_epochs(paths: list, counts: list, seed: int) -> tf.data.Dataset:
    """(path, count) of the files repeated forever, each epoch in its own
    order, keyed on (`seed`, 2 * epoch)."""
    paths, counts = tf.constant(paths), tf.constant(counts, tf.int64)

    def epoch(index):
        order = _stateless_order(tf.size(paths), seed, 2 * index)
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths, order), tf.gather(counts, order)))

    return tf.data.Dataset.counter().flat_map(epoch)


def _shuffled_windows(chunks: tf.data.Dataset, window: int, seed: int) -> tf.data.Dataset:
    """The (endless) stream of record chunks shuffled within consecutive
    windows of `window` chunks, each window in its own order keyed on
    (`seed`, 2 * window index + 1)."""
    if window == 1:
        return chunks

    def permute(index, block):
        return tf.gather(block, _stateless_order(tf.shape(block)[0], seed, 2 * index + 1))

    return chunks.batch(window).enumerate().map(permute).unbatch()


def make_dataset(data_dir: str, batch_size: int, *, training: bool = True,
                 seed: int = 0,
                 input_context: tf.distribute.InputContext | None = None,
                 skip_batches: int = 0,
                 shuffle_buffer: int = 10_000,
                 masked_lm_prob: float | None = None) -> tf.data.Dataset:
    """Builds the batched, parsed dataset of one split directory.

    Args:
        data_dir: str. Directory with shards and `manifest.json`.
        batch_size: int. Batch this pipeline yields (per replica under a
            strategy).
        training: bool. True: file order (every epoch anew) and record
            chunks shuffled with `seed`, repeated forever, partial batches
            dropped; the order depends on `seed` only, not on TensorFlow's
            global seed, so it is the trainer's order for `train.seed`. False: one pass in file
            order, the last batch padded with all-zero examples (zero
            `masked_lm_weights`). Defaults to True.
        seed: int. Seed of the file and record shuffles and of dynamic masks
            (keyed on it, the pipeline id and the batch index); pass the same seed to
            every input pipeline so their shards stay disjoint. Defaults to 0.
        input_context: tf.distribute.InputContext | None. Shards by files when
            their count is a multiple of `num_input_pipelines`, else by
            records. Defaults to None.
        skip_batches: int. Batches skipped (before parsing) to resume.
            Defaults to 0.
        shuffle_buffer: int. Records shuffled together: the chunks of 16
            records (see `_BLOCK_LENGTH`) are put in random order within each
            window of `shuffle_buffer` records. Defaults to 10,000.
        masked_lm_prob: float | None. Dynamic-masking records: the fraction
            of eligible tokens masked, instead of the manifest's
            `masked_lm_prob` (the trainer's `data.masked_lm_prob`); None: the
            manifest's. ValueError for static records, or a rate the
            records' `max_predictions_per_seq` cannot hold
            (`dynamic_masking.masking_rate`). Defaults to None.

    Returns:
        A `tf.data.Dataset` of feature dicts with static shapes.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: "
                         f"batch_size={batch_size!r}")
    if not isinstance(skip_batches, int) or skip_batches < 0:
        raise ValueError(f"`skip_batches` must be an int >= 0. Received: "
                         f"skip_batches={skip_batches!r}")
    if not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
        raise ValueError(f"`shuffle_buffer` must be an int >= 1. Received: "
                         f"shuffle_buffer={shuffle_buffer!r}")
    manifest = read_manifest(data_dir)
    dynamic_masking.masking_rate(manifest, masked_lm_prob, data_dir)  # refused before reading
    compression = manifest.compression or None
    shards = list(zip(manifest.shard_files, manifest.examples_per_shard))
    if training:
        shards = [(f, n) for f, n in shards if n > 0]
    paths = [os.path.join(data_dir, f) for f, _ in shards]
    if manifest.num_examples == 0:
        raise ValueError(f"Data directory {data_dir!r} holds no examples "
                         "(manifest num_examples=0). Rebuild it with "
                         "`python -m data_pipeline.build` on a larger corpus.")
    integrity.check_shards(data_dir, manifest)
    mode, num_pipelines, pipeline_id = _sharding(manifest, len(paths),
                                                 input_context)

    # (path, count): each file's reader asserts the manifest's count, so a
    # shard with fewer (or more) records fails when it ends, in the first
    # epoch (FailedPreconditionError; `find_bad_record` names the shard).
    files = tf.data.Dataset.from_tensor_slices(
        (paths, tf.constant([n for _, n in shards], tf.int64)))
    local_counts = [n for _, n in shards]
    if mode == "files":
        files = files.shard(num_pipelines, pipeline_id)
        local_counts = local_counts[pipeline_id::num_pipelines]

    if training:
        num_local_files = len(local_counts)
        local_paths = paths[pipeline_id::num_pipelines] if mode == "files" else paths
        files = _shuffled_epochs(local_paths, local_counts, seed)
        ds = files.interleave(
            lambda f, n: _read_file(f, n, compression),
            cycle_length=min(num_local_files, _MAX_CYCLE_LENGTH),
            block_length=_BLOCK_LENGTH, num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        if mode == "records":
            ds = ds.shard(num_pipelines, pipeline_id)
        ds = ds.batch(_BLOCK_LENGTH)
        ds = _shuffled_windows(ds, -(-shuffle_buffer // _BLOCK_LENGTH), seed)
        ds = ds.rebatch(batch_size, drop_remainder=True)
    else:
        ds = files.flat_map(lambda f, n: _read_file(f, n, compression))
        if mode == "records":
            ds = ds.shard(num_pipelines, pipeline_id)
            local = len(range(pipeline_id, manifest.num_examples, num_pipelines))
            largest = len(range(0, manifest.num_examples, num_pipelines))
        elif mode == "files":
            local = sum(local_counts)
            largest = max(sum(manifest.examples_per_shard[k::num_pipelines])
                          for k in range(num_pipelines))
        else:
            local = largest = manifest.num_examples
        # Every pipeline yields the same number of batches; the padding
        # examples have zero weights so they count for nothing.
        num_batches = -(-largest // batch_size)
        padding = num_batches * batch_size - local
        if padding:
            zero = features.zero_record(features.feature_lengths(
                manifest.task, manifest.masking, manifest.max_seq_length,
                manifest.max_predictions_per_seq, manifest.next_sentence,
                manifest.condition))
            ds = ds.concatenate(
                tf.data.Dataset.from_tensors(tf.constant(zero)).repeat(padding))
        ds = ds.batch(batch_size, drop_remainder=True)

    ds = ds.enumerate()  # Batch index: the dynamic-masking key.
    if skip_batches:
        ds = ds.skip(skip_batches)
    ds = ds.map(_parse_fn(manifest, seed, pipeline_id, masked_lm_prob=masked_lm_prob),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
    return ds.with_options(options)


def make_replica_dataset(data_dir: str, global_batch_size: int,
                         input_context: tf.distribute.InputContext, *,
                         training: bool = True, seed: int = 0,
                         shuffle_buffer: int = 10_000, skip_batches: int = 0,
                         shard_by: str = "batch",
                         masked_lm_prob: float | None = None) -> tf.data.Dataset:
    """One input pipeline's share of every global batch, as one batch per
    local replica: the dataset `strategy.distribute_datasets_from_function`
    wants (the single owner of splitting batches across hosts and replicas).

    Args:
        data_dir: str. Directory with shards and `manifest.json`. Required.
        global_batch_size: int. Sequences per step, all replicas together.
            Required.
        input_context: tf.distribute.InputContext. The pipeline's id and
            count, and the number of replicas. Required.
        training: bool. As in `make_dataset`. Defaults to True.
        seed: int. As in `make_dataset`. Defaults to 0.
        shuffle_buffer: int. As in `make_dataset`. Defaults to 10,000.
        skip_batches: int. Global batches already consumed (resume).
            Defaults to 0.
        shard_by: str. "batch": every pipeline reads the global batches and
            keeps its rows of each, so all replicas together see exactly the
            batches one device would see, in the same order. "files":
            disjoint files (or records) per pipeline, batched per replica.
            Defaults to "batch".
        masked_lm_prob: float | None. As in `make_dataset`. Defaults to None.

    Returns:
        A `tf.data.Dataset` of per-replica batches (the global batch itself
        with one replica).
    """
    context = input_context
    per_replica = context.get_per_replica_batch_size(global_batch_size)
    replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
    options = dict(training=training, seed=seed, shuffle_buffer=shuffle_buffer,
                   masked_lm_prob=masked_lm_prob)
    if shard_by == "files" and context.num_input_pipelines > 1:
        # `skip_batches` counts global batches; this pipeline yields one
        # batch per local replica and step.
        dataset = make_dataset(data_dir, per_replica, input_context=context,
                               skip_batches=skip_batches * replicas_per_pipeline, **options)
        if not training and replicas_per_pipeline > 1:
            # Batches go round-robin to the local replicas and a last
            # incomplete round would be dropped: complete it with
            # zero-weight batches (a trailing padding round is harmless).
            padding = dataset.take(1).map(lambda b: tf.nest.map_structure(tf.zeros_like, b))
            dataset = dataset.concatenate(padding.repeat(replicas_per_pipeline - 1))
        return dataset
    dataset = make_dataset(data_dir, global_batch_size, skip_batches=skip_batches, **options)
    return replica_rows(dataset, global_batch_size, context)


def replica_rows(dataset: tf.data.Dataset, global_batch_size: int,
                 input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    """A dataset of global batches → this input pipeline's rows of each, as
    one batch per local replica, in replica order (what
    `strategy.distribute_datasets_from_function` wants): all replicas
    together see exactly the global batches, so any strategy computes one
    device's numbers. Also used by fine-tuning's in-memory batches."""
    context = input_context
    if context.num_replicas_in_sync == 1:
        return dataset
    per_replica = context.get_per_replica_batch_size(global_batch_size)
    replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
    rows = replicas_per_pipeline * per_replica
    start = context.input_pipeline_id * rows

    def local_rows(batch):  # (global, ...) -> (local replicas, per replica, ...)
        return {name: tf.reshape(value[start:start + rows],
                                 [replicas_per_pipeline, per_replica] + value.shape[1:])
                for name, value in batch.items()}

    return dataset.map(local_rows).unbatch()


def iterate_numpy(data_dir: str, batch_size: int = 1024, *, mask: bool = False,
                  seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Yields every example of a split once, in file order, as numpy dicts.

    Args:
        data_dir: str. Directory with shards and `manifest.json`.
        batch_size: int. Records parsed per step. Defaults to 1024.
        mask: bool. Apply dynamic masking (keyed on `seed` and the batch
            index, so masks depend on `batch_size`); False yields the stored
            features (`word_starts` included). Defaults to False.
        seed: int. Dynamic-masking seed. Defaults to 0.

    Yields:
        Dicts of feature name -> np.ndarray (int32, weights float32), one
        example each, without padding.
    """
    manifest = read_manifest(data_dir)
    paths = [os.path.join(data_dir, f) for f in manifest.shard_files]
    ds = tf.data.TFRecordDataset(paths,
                                 compression_type=manifest.compression or None)
    ds = ds.batch(batch_size).enumerate().map(
        _parse_fn(manifest, seed, 0, mask=mask))
    for batch in ds.as_numpy_iterator():
        size = len(batch["input_ids"])
        for i in range(size):
            yield {name: value[i] for name, value in batch.items()}
