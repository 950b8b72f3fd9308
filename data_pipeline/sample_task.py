"""A labelled task made from the built-in sample: which top-level standard-library
package a docstring paragraph comes from.

Every docstring paragraph (at least `min_words` words, cleaned as the sample
corpus is) of a module inside a package (`asyncio/events.py` → `asyncio`) is an
example; the `num_classes` packages with the most paragraphs are the labels.
Train and eval are split by module: all the paragraphs of a module go to the
same split, so no module is in both, and the model has to recognise a
package's vocabulary and style rather than remember a module. A paragraph
whose text also appears in train is dropped from eval. `train_fraction` keeps
a seeded share of each label's training paragraphs (the held-out split is
unchanged): the low-data regime, where what pretraining is worth shows most.

The files are JSONL with the fields `text` and `label`, the input format of
`python -m pretraining.finetune --train_file=... --text_field=text
--label_field=label`; `task.json` beside them records the labels, the split's
modules, the counts and the majority-class baseline.

Example:
```python
task = write_sample_task("runs/demo/finetune_data")
task.train_path, task.eval_path, task.majority_accuracy
```
"""

import collections
import dataclasses
import hashlib
import json
import os
import re

from data_pipeline import atomic, sample_corpus

TRAIN_FILE = "train.jsonl"
EVAL_FILE = "eval.jsonl"
TASK_FILE = "task.json"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclasses.dataclass
class SampleTask:
    """The written task.

    Args:
        train_path: str. The training JSONL file. Required.
        eval_path: str. The held-out JSONL file. Required.
        labels: list of str. The packages, sorted. Required.
        train_examples: int. Training examples. Required.
        eval_examples: int. Held-out examples. Required.
        majority_label: str. The most common training label. Required.
        majority_accuracy: float. Held-out accuracy of always predicting
            `majority_label`. Required.
    """

    train_path: str
    eval_path: str
    labels: list
    train_examples: int
    eval_examples: int
    majority_label: str
    majority_accuracy: float


def module_paragraphs(min_words: int = 6) -> dict:
    """Paragraphs of every standard-library module inside a package.

    Args:
        min_words: int. Shorter paragraphs are dropped. Defaults to 6.

    Returns:
        dict: module path (relative to the standard library) → list of
        paragraphs (one line each), in file order.
    """
    out = {}
    for module, docstrings in sample_corpus.module_docstrings():
        if os.sep not in module:
            continue  # A top-level module: no package to name.
        paragraphs = []
        for doc in docstrings:
            for block in _PARAGRAPH_BREAK.split(doc):
                text = " ".join(sample_corpus.clean_text(block))
                if len(text.split()) >= min_words:
                    paragraphs.append(text)
        if paragraphs:
            out[module] = paragraphs
    return out


def package_of(module: str) -> str:
    """`asyncio/events.py` → `asyncio`."""
    return module.split(os.sep, 1)[0]


def split_modules(paragraphs: dict, num_classes: int, eval_fraction: float,
                  seed: int) -> tuple[dict, dict]:
    """Chooses the labels and splits each label's modules into train and eval.

    A package's modules are put in a seeded order and each is taken for eval
    while the eval modules stay within `eval_fraction` of the package's
    paragraphs (when none fits, the smallest module is held out), so every
    label has modules in both splits (packages of a single module are not
    labels).

    Returns:
        `(train, eval)`: dicts of module → label.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1). Received: {eval_fraction}")
    counts, modules = collections.Counter(), collections.defaultdict(list)
    for module, texts in paragraphs.items():
        counts[package_of(module)] += len(texts)
        modules[package_of(module)].append(module)
    eligible = [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if len(modules[p]) >= 2]
    if len(eligible) < num_classes:
        raise ValueError(f"num_classes={num_classes}: this Python's standard library has only "
                         f"{len(eligible)} packages with two or more documented modules; "
                         "pass a smaller num_classes.")
    train, held_out = {}, {}
    for package in sorted(eligible[:num_classes]):
        order = sorted(modules[package], key=lambda m: hashlib.sha256(
            f"{seed}:{m}".encode()).hexdigest())
        target, chosen = eval_fraction * counts[package], []
        for module in order:
            if sum(len(paragraphs[m]) for m in chosen) + len(paragraphs[module]) <= target:
                chosen.append(module)
        if not chosen:  # Every module is above the share: hold out the smallest.
            chosen = [min(order, key=lambda m: (len(paragraphs[m]), m))]
        for module in order:
            (held_out if module in chosen else train)[module] = package
    return train, held_out


def _rows(paragraphs: dict, modules: dict, skip=frozenset()) -> list:
    return [{"text": text, "label": label} for module, label in modules.items()
            for text in paragraphs[module] if text not in skip]


def subsample(rows: list, fraction: float, seed: int) -> list:
    """A seeded `fraction` of each label's rows (at least one), in their order.

    The rows of a label are ranked by a hash of the seed and their text, and
    the first `round(fraction × count)` are kept, so the labels keep their
    proportions, a larger fraction keeps a superset, and the result does not
    depend on Python's hash seed.

    Args:
        rows: list of dict. Rows with `text` and `label`. Required.
        fraction: float. In (0, 1]. Required.
        seed: int. Which rows. Required.

    Returns:
        list of dict: the kept rows, in the order of `rows`.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1]. Received: {fraction}")
    if fraction == 1.0:
        return list(rows)
    by_label = collections.defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row["label"]].append(i)
    keep = set()
    for indices in by_label.values():
        ranked = sorted(indices, key=lambda i: (hashlib.sha256(
            f"{seed}:{rows[i]['text']}".encode()).hexdigest(), i))
        keep.update(ranked[:max(1, round(fraction * len(indices)))])
    return [row for i, row in enumerate(rows) if i in keep]


def write_sample_task(output_dir: str, num_classes: int = 8, eval_fraction: float = 0.25,
                      seed: int = 0, min_words: int = 6,
                      train_fraction: float = 1.0) -> SampleTask:
    """Writes `train.jsonl`, `eval.jsonl` and `task.json` to `output_dir`.

    Args:
        output_dir: str. Created if missing; the files are written atomically.
        num_classes: int. The packages with the most paragraphs. Defaults to 8.
        eval_fraction: float. The share of each package's paragraphs (by whole
            modules) held out. Defaults to 0.25.
        seed: int. Which modules are held out. Defaults to 0.
        min_words: int. Shortest paragraph kept. Defaults to 6.
        train_fraction: float. The share of each label's training paragraphs
            kept (`subsample`, seeded by `seed`); the held-out split is the
            same for every fraction. Defaults to 1.0.

    Returns:
        `SampleTask`.
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1]. Received: {train_fraction}")
    paragraphs = module_paragraphs(min_words)
    train_modules, eval_modules = split_modules(paragraphs, num_classes, eval_fraction, seed)
    train = _rows(paragraphs, train_modules)
    held_out = _rows(paragraphs, eval_modules, skip={row["text"] for row in train})
    train = subsample(train, train_fraction, seed)
    labels = sorted(set(train_modules.values()))
    majority, _ = collections.Counter(r["label"] for r in train).most_common(1)[0]
    accuracy = sum(r["label"] == majority for r in held_out) / len(held_out)
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for name, rows in ((TRAIN_FILE, train), (EVAL_FILE, held_out)):
        paths[name] = os.path.join(output_dir, name)
        atomic.write_text(paths[name], "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    task = SampleTask(paths[TRAIN_FILE], paths[EVAL_FILE], labels, len(train), len(held_out),
                      majority, accuracy)
    info = {**dataclasses.asdict(task), "seed": seed, "eval_fraction": eval_fraction,
            "min_words": min_words, "train_fraction": train_fraction,
            "train_modules": sorted(train_modules), "eval_modules": sorted(eval_modules),
            "label_counts": {split: dict(sorted(collections.Counter(
                r["label"] for r in rows).items())) for split, rows in (
                    ("train", train), ("eval", held_out))}}
    atomic.write_text(os.path.join(output_dir, TASK_FILE), json.dumps(info, indent=2) + "\n")
    return task
