"""The demo's labelled task (`data_pipeline.sample_task`): split by module, every
label in both splits, the baseline recounted from the files, same bytes for
the same seed."""

import collections
import json

import pytest

from data_pipeline import sample_task


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("task")
    return out, sample_task.write_sample_task(str(out), num_classes=6, seed=3)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_split_by_module_no_module_in_both(written):
    out, task = written
    info = json.loads((out / sample_task.TASK_FILE).read_text())
    train_modules, eval_modules = set(info["train_modules"]), set(info["eval_modules"])
    assert train_modules and eval_modules and not train_modules & eval_modules
    paragraphs = sample_task.module_paragraphs()
    # Every row's text comes from a module of its own split, labelled by its package.
    for path, modules in ((task.train_path, train_modules), (task.eval_path, eval_modules)):
        by_text = collections.defaultdict(set)
        for module in modules:
            for text in paragraphs[module]:
                by_text[text].add(sample_task.package_of(module))
        rows = _read(path)
        assert rows and all(row["label"] in by_text[row["text"]] for row in rows)
    train_texts = {row["text"] for row in _read(task.train_path)}
    assert not train_texts & {row["text"] for row in _read(task.eval_path)}


def test_labels_counts_and_majority_baseline(written):
    _, task = written
    train, held_out = _read(task.train_path), _read(task.eval_path)
    assert len(task.labels) == 6 and task.labels == sorted(task.labels)
    assert {r["label"] for r in train} == {r["label"] for r in held_out} == set(task.labels)
    assert (task.train_examples, task.eval_examples) == (len(train), len(held_out))
    counts = collections.Counter(r["label"] for r in train)
    assert task.majority_label == max(counts, key=counts.get)
    expected = sum(r["label"] == task.majority_label for r in held_out) / len(held_out)
    assert task.majority_accuracy == pytest.approx(expected, abs=1e-12)
    assert 0.05 < task.majority_accuracy < 0.6  # A real task, not one class.


def test_same_seed_same_bytes_other_seed_other_split(written, tmp_path):
    out, _ = written
    again = sample_task.write_sample_task(str(tmp_path / "a"), num_classes=6, seed=3)
    assert open(again.eval_path, "rb").read() == (out / sample_task.EVAL_FILE).read_bytes()
    other = sample_task.write_sample_task(str(tmp_path / "b"), num_classes=6, seed=4)
    assert open(other.eval_path, "rb").read() != (out / sample_task.EVAL_FILE).read_bytes()


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="eval_fraction must be in"):
        sample_task.write_sample_task(str(tmp_path), eval_fraction=1.5)
    with pytest.raises(ValueError, match="num_classes=500"):
        sample_task.write_sample_task(str(tmp_path), num_classes=500)


def test_train_fraction_keeps_each_labels_share_and_the_held_out_split(written, tmp_path):
    out, full = written
    small = sample_task.write_sample_task(str(tmp_path / "small"), num_classes=6, seed=3,
                                          train_fraction=0.1)
    # The held-out split is the same file; train is a per-label 10% of the full one.
    assert open(small.eval_path, "rb").read() == (out / sample_task.EVAL_FILE).read_bytes()
    train, kept = _read(full.train_path), _read(small.train_path)
    counts = collections.Counter(r["label"] for r in train)
    kept_counts = collections.Counter(r["label"] for r in kept)
    assert kept_counts == {label: max(1, round(0.1 * n)) for label, n in counts.items()}
    # A subsequence of the full file (its order), and a larger fraction keeps a superset.
    rest = iter(train)
    assert all(any(r == other for other in rest) for r in kept)
    assert sample_task.subsample(train, 0.1, seed=3) == kept
    larger = sample_task.subsample(train, 0.3, seed=3)
    assert {json.dumps(r) for r in kept} < {json.dumps(r) for r in larger}
    info = json.loads((tmp_path / "small" / sample_task.TASK_FILE).read_text())
    assert info["train_fraction"] == 0.1 and info["label_counts"]["train"] == dict(
        sorted(kept_counts.items()))


def test_subsample_is_seeded_and_refuses_a_bad_fraction():
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(40)]
    first = sample_task.subsample(rows, 0.25, seed=0)
    assert first == sample_task.subsample(rows, 0.25, seed=0)
    assert first != sample_task.subsample(rows, 0.25, seed=1)
    assert [r["label"] for r in first].count("a") == 5 == [r["label"] for r in first].count("b")
    assert sample_task.subsample(rows, 1.0, seed=0) == rows
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"train_fraction must be in .*Received: {bad}"):
            sample_task.subsample(rows, bad, seed=0)
