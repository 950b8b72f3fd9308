r"""Prints a data directory: manifest, counts and a few decoded examples.

  python -m data_pipeline.inspect DIR [--num_examples=3] [--seed=0] [--verify]

Masked words are shown in brackets as `[original]` (or `[original->new]`
when replaced by a random token); dynamic-masking data is masked with
--seed first. `--verify` reads and parses every record and checks each
shard's count against the manifest.

Exit status: 0 done; 2 bad data, naming the shard file and the record index
(one line on stderr).
"""

import collections
import os

from absl import app
from absl import flags

from data_pipeline import cli
from data_pipeline import features


def _piece(tokenizer, token_id):
    return tokenizer.id_to_piece(int(token_id)) if tokenizer else str(token_id)


def format_example(example: dict, tokenizer=None) -> str:
    """One example as text, masked tokens in brackets."""
    n = int(example["input_mask"].sum())
    ids = example["input_ids"][:n]
    originals = {}
    if "masked_lm_weights" in example:
        k = int(example["masked_lm_weights"].sum())
        originals = dict(zip(example["masked_lm_positions"][:k].tolist(),
                             example["masked_lm_ids"][:k].tolist()))
    words = []
    for i, token in enumerate(ids.tolist()):
        text = _piece(tokenizer, token)
        if i in originals:
            original = _piece(tokenizer, originals[i])
            text = (f"[{original}]" if originals[i] == token or
                    token == int(example.get("mask_id", -1))
                    else f"[{original}->{text}]")
        words.append(text)
    line = " ".join(words)
    if "segment_ids" in example and example["segment_ids"][:n].any():
        line += f"\n    segment_ids: {example['segment_ids'][:n].tolist()}"
    if "next_sentence_labels" in example:
        line += f"\n    next_sentence_label: {int(example['next_sentence_labels'][0])}"
    if "condition" in example:
        value = example["condition"].tolist()
        labels = example.get("condition_labels")
        if labels:
            value = f"{labels[value[0]]} (id {value[0]})"
        line += f"\n    condition: {value}"
    return line


def describe(data_dir: str, num_examples: int = 3, seed: int = 0) -> str:
    """The report `python -m data_pipeline.inspect` prints."""
    # pylint: disable-next=import-outside-toplevel  (TensorFlow: imported after --help)
    from data_pipeline import input as input_lib, tokenization
    manifest = features.Manifest.read(data_dir)
    lines = [f"# {os.path.join(data_dir, features.MANIFEST_FILE)}",
             manifest.to_json().rstrip(), "",
             f"task={manifest.task} masking={manifest.masking} "
             f"examples={manifest.num_examples} shards={manifest.num_shards}"]
    tokenizer = None
    if os.path.isfile(manifest.tokenizer_file):
        options = {k: v for k, v in manifest.tokenizer_options.items()
                   if k in ("do_lower_case", "strip_accents")}
        tokenizer = tokenization.load_tokenizer(manifest.tokenizer_file,
                                                **options)
    counts = collections.Counter()
    for i, example in enumerate(input_lib.iterate_numpy(
            data_dir, batch_size=max(num_examples, 1), seed=seed,
            mask=manifest.masking == "dynamic")):
        if i >= num_examples:
            break
        example["mask_id"] = manifest.special_ids["mask"]
        if manifest.condition:
            example["condition_labels"] = manifest.condition["labels"]
        counts["tokens"] += int(example["input_mask"].sum())
        lines.append(f"\nexample {i}: {format_example(example, tokenizer)}")
    return "\n".join(lines)


def verify(data_dir: str) -> str:
    """Reads every record of a split; the report line (ValueError naming the
    first bad shard and record otherwise)."""
    from data_pipeline import integrity  # pylint: disable=import-outside-toplevel
    manifest = features.Manifest.read(data_dir)
    counts = integrity.verify_split(data_dir)
    return (f"verified: {sum(counts)} records in {len(counts)} shard(s) read and "
            f"parsed, counts match {os.path.join(data_dir, features.MANIFEST_FILE)} "
            f"(task={manifest.task}, max_seq_length={manifest.max_seq_length})")


def run(data_dir: str, num_examples: int = 3, seed: int = 0,
        verify_records: bool = False) -> str:
    """What the CLI prints; TensorFlow read errors become a ValueError naming
    the shard and record."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from data_pipeline import integrity  # pylint: disable=import-outside-toplevel
    manifest = features.Manifest.read(data_dir)
    integrity.check_shards(data_dir, manifest)
    try:
        report = describe(data_dir, num_examples, seed)
    except tf.errors.OpError as e:
        raise ValueError(integrity.explain_error(data_dir, e)) from None
    if verify_records:
        report += "\n\n" + verify(data_dir)
    return report


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("Usage: python -m data_pipeline.inspect DIR")
    print(run(argv[1], flags.FLAGS.num_examples, flags.FLAGS.seed, flags.FLAGS.verify))


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_integer("num_examples", 3, "Examples to decode.")
    flags.DEFINE_integer("seed", 0, "Seed of dynamic masks shown.")
    flags.DEFINE_bool("verify", False, "Read and parse every record; check each "
                      "shard's count against the manifest.")


if __name__ == "__main__":
    cli.run(main, define_flags)
