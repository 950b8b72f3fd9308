r"""Prints a data directory: manifest, counts and a few decoded examples.

  python -m data_pipeline.inspect DIR [--num_examples=3] [--seed=0]

Masked words are shown in brackets as `[original]` (or `[original->new]`
when replaced by a random token); dynamic-masking data is masked with
--seed first.
"""

import collections
import os

from absl import app
from absl import flags

from data_pipeline import features
from data_pipeline import input as input_lib
from data_pipeline import tokenization


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
    return line


def describe(data_dir: str, num_examples: int = 3, seed: int = 0) -> str:
    """The report `python -m data_pipeline.inspect` prints."""
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
        counts["tokens"] += int(example["input_mask"].sum())
        lines.append(f"\nexample {i}: {format_example(example, tokenizer)}")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("Usage: python -m data_pipeline.inspect DIR")
    try:
        print(describe(argv[1], flags.FLAGS.num_examples, flags.FLAGS.seed))
    except ValueError as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    flags.DEFINE_integer("num_examples", 3, "Examples to decode.")
    flags.DEFINE_integer("seed", 0, "Seed of dynamic masks shown.")
    app.run(main)
