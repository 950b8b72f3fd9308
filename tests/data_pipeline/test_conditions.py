"""Conditioned records: every record carries its document's condition, for
each source kind (JSONL class and vector, TFDS, file paths) and task, read
back through `input.make_dataset`; and the bad inputs refused in one line.

Each condition's documents use words of their own, so a record's tokens
tell which condition's documents it was made from: the reference is the
corpus itself.
"""

import json
import os

import numpy as np
import pytest

from data_pipeline import builder
from data_pipeline import conditions
from data_pipeline import corpus
from data_pipeline import features
from data_pipeline import input as input_lib
from data_pipeline import sources
from data_pipeline import tasks

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Three conditions, each with words of its own (one word piece each).
_WORDS = {
    "gamma": "red green blue cyan magenta yellow black white".split(),
    "alpha": "one two three four five six seven eight".split(),
    "beta": "cat dog cow hen fox owl bee ant".split(),
}
_LABELS = sorted(_WORDS)
_VECTORS = {"alpha": [1.0, 0.5, -2.0], "beta": [0.0, 3.25, 1.0],
            "gamma": [-1.5, 0.0, 0.125]}
_BUILD = dict(seed=3, num_shards=2, eval_fraction=0.25, docs_per_unit=8)
_TASKS = {
    "mlm_static_nsp": dict(task="mlm", next_sentence=True, max_seq_length=24,
                           max_predictions_per_seq=4),
    "mlm_dynamic": dict(task="mlm", masking="dynamic", max_seq_length=24,
                        max_predictions_per_seq=4),
    "lm": dict(task="lm", max_seq_length=16, max_predictions_per_seq=4),
    "seq2seq": dict(task="seq2seq", max_seq_length=24),
    "seq2seq_pairs": dict(task="seq2seq", pairs=True, max_seq_length=24),
}


def _documents(num=48, seed=0):
    """(label, sentences) of `num` documents, labels cycling."""
    rng = np.random.default_rng(seed)
    labels = ["beta", "alpha", "gamma"]
    out = []
    for d in range(num):
        label = labels[d % 3]
        out.append((label, [" ".join(rng.choice(_WORDS[label], int(
            rng.integers(2, 7)))) + " ." for _ in range(int(rng.integers(1, 5)))]))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """vocab.txt, a JSONL corpus (`label`, `vec`) and one folder of text
    files per label."""
    root = tmp_path_factory.mktemp("conditions")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(_SPECIAL + [w for label in _LABELS
                                           for w in _WORDS[label]] + ["."])
                     + "\n")
    docs = _documents()
    with open(root / "docs.jsonl", "w", encoding="utf-8") as f:
        for label, sentences in docs:
            f.write(json.dumps({"text": "\n".join(sentences), "label": label,
                                "vec": _VECTORS[label],
                                "target": sentences[0]}) + "\n")
    for d, (label, sentences) in enumerate(docs):
        (root / "tree" / label).mkdir(parents=True, exist_ok=True)
        corpus.write_documents([sentences],
                               str(root / "tree" / label / f"doc{d:02d}.txt"))
    return {"vocab": str(vocab), "jsonl": str(root / "docs.jsonl"),
            "tree": str(root / "tree" / "*" / "*.txt"), "docs": docs}


def _ids_of(vocab_path):
    """label -> the token ids of its words."""
    vocab = open(vocab_path, encoding="utf-8").read().split()
    return {label: {vocab.index(w) for w in words}
            for label, words in _WORDS.items()}


def _build(files, out, task, **source):
    if task == "seq2seq_pairs":
        source["target_field"] = "target"
    source = sources.SourceConfig(**{"input_format": "jsonl", **source})
    inputs = source.input_format == "jsonl" and files["jsonl"] or files["tree"]
    return builder.build(inputs, files["vocab"], str(out),
                         task=tasks.TaskConfig(**_TASKS[task]), source=source,
                         **_BUILD)


def _check_split(split_dir, label_of_row, ids_by_label):
    """Every record's content tokens (masks undone) are words of its
    condition's documents; returns {label: records}."""
    seen = {}
    content = set().union(*ids_by_label.values())
    for ex in input_lib.iterate_numpy(split_dir):
        ids = ex["input_ids"].copy()
        if "masked_lm_positions" in ex:
            k = int(ex["masked_lm_weights"].sum())
            ids[ex["masked_lm_positions"][:k]] = ex["masked_lm_ids"][:k]
        label = label_of_row(ex["condition"])
        words = {int(i) for i in ids[ex["input_mask"] > 0]} & content
        assert words <= ids_by_label[label], (label, words)  # lm: maybe "."
        seen[label] = seen.get(label, 0) + 1
    return seen


@pytest.mark.parametrize("task", sorted(_TASKS))
def test_jsonl_class_round_trip_every_task(files, tmp_path, task):
    manifests = _build(files, tmp_path, task, condition_field="label")
    ids = _ids_of(files["vocab"])
    for split, manifest in manifests.items():
        assert manifest.condition == {"kind": "class", "size": 3,
                                      "labels": _LABELS}
        read = features.Manifest.read(str(tmp_path / split))
        assert read.condition == manifest.condition
        seen = _check_split(str(tmp_path / split),
                            lambda c: _LABELS[int(c[0])], ids)
        assert sorted(seen) == _LABELS, (split, seen)
    if task not in ("mlm_dynamic", "lm"):
        return  # parsing is the same for every task
    # Static shapes through the trainer's pipeline (dynamic masks included).
    ds = input_lib.make_dataset(str(tmp_path / "train"), 4, seed=1)
    spec = ds.element_spec["condition"]
    assert (spec.shape.as_list(), spec.dtype.name) == ([4, 1], "int32")
    batch = next(iter(ds))
    assert set(np.asarray(batch["condition"]).ravel()) <= {0, 1, 2}
    if task == "mlm_dynamic":
        assert "masked_lm_positions" in batch and "word_starts" not in batch
    evl = input_lib.make_dataset(str(tmp_path / "eval"), 64, training=False)
    assert evl.element_spec["condition"].shape.as_list() == [64, 1]


def test_lm_tokens_of_each_condition_are_its_documents(files, tmp_path):
    """lm keeps every token: per condition, the records' tokens are exactly
    those of that condition's documents (none crosses a condition)."""
    _build(files, tmp_path, "lm", condition_field="label")
    vocab = open(files["vocab"], encoding="utf-8").read().split()
    want = {label: [] for label in _LABELS}
    for label, sentences in files["docs"]:
        want[label].extend(vocab.index(w) for s in sentences
                           for w in s.split())
    got = {label: [] for label in _LABELS}
    for split in ("train", "eval"):
        for ex in input_lib.iterate_numpy(str(tmp_path / split)):
            ids = ex["input_ids"][ex["input_mask"] > 0]
            got[_LABELS[int(ex["condition"][0])]].extend(
                int(i) for i in ids if i != 3)  # less [SEP]
    assert {k: sorted(v) for k, v in got.items()} == {
        k: sorted(v) for k, v in want.items()}


def test_jsonl_vector_round_trip(files, tmp_path):
    manifests = _build(files, tmp_path, "mlm_dynamic", condition_field="vec")
    assert manifests["train"].condition == {"kind": "vector", "size": 3,
                                            "labels": []}
    by_vector = {tuple(v): k for k, v in _VECTORS.items()}
    seen = _check_split(str(tmp_path / "train"),
                        lambda c: by_vector[tuple(float(x) for x in c)],
                        _ids_of(files["vocab"]))
    assert sorted(seen) == _LABELS
    ds = input_lib.make_dataset(str(tmp_path / "train"), 4, seed=1)
    spec = ds.element_spec["condition"]
    assert (spec.shape.as_list(), spec.dtype.name) == ([4, 3], "float32")


def test_given_label_order_and_path_regex(files, tmp_path):
    order = ("gamma", "alpha", "beta")
    manifests = _build(files, tmp_path, "lm", input_format="text",
                       condition_from_path=r"/([a-z]+)/doc\d+\.txt$",
                       condition_labels=order)
    assert manifests["train"].condition["labels"] == list(order)
    seen = _check_split(str(tmp_path / "train"), lambda c: order[int(c[0])],
                        _ids_of(files["vocab"]))
    assert sorted(seen) == _LABELS


@pytest.fixture(scope="module")
def tfds_dir(files, tmp_path_factory):
    """A local TFDS dataset `cond_tiny` of the corpus: `topic` a ClassLabel
    whose names are not sorted, `vec` a float vector; and `cond_tree`, the
    text tree prepared with a label from each file's folder."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    from data_pipeline import tfds_builder  # pylint: disable=import-outside-toplevel

    class CondTiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        url_infos = None
        _checksums_path = None

        def _info(self):
            return self.dataset_info_from_configs(
                features=tfds.features.FeaturesDict({
                    "text": tfds.features.Text(),
                    "topic": tfds.features.ClassLabel(names=_TFDS_NAMES),
                    "vec": tfds.features.Tensor(shape=(3,),
                                                dtype=np.float32)}),
                supervised_keys=None)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for d, (label, sentences) in enumerate(files["docs"]):
                yield d, {"text": "\n".join(sentences), "topic": label,
                          "vec": np.array(_VECTORS[label], np.float32)}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    CondTiny(data_dir=data_dir).download_and_prepare()
    tfds_builder.prepare_text_files(files["tree"], data_dir, "cond_tree",
                                    label_from_path=r"/([a-z]+)/doc\d+\.txt$")
    return data_dir


_TFDS_NAMES = ["gamma", "beta", "alpha"]


@pytest.mark.parametrize("name,field,condition", [
    ("cond_tiny", "topic", {"kind": "class", "size": 3, "labels": _TFDS_NAMES}),
    ("cond_tiny", "vec", {"kind": "vector", "size": 3, "labels": []}),
    ("cond_tree", "label", {"kind": "class", "size": 3, "labels": _LABELS}),
])
def test_tfds_round_trip(files, tfds_dir, tmp_path, name, field, condition):
    """A ClassLabel keeps the dataset's own names (and order); a float
    Tensor feature is a vector; prepare_tfds --label_from_path's labels."""
    manifests = builder.build(
        name, files["vocab"], str(tmp_path), task=tasks.TaskConfig(
            **_TASKS["mlm_dynamic"]), source=sources.SourceConfig(
                input_format="tfds", tfds_data_dir=tfds_dir,
                condition_field=field), **_BUILD)
    assert manifests["train"].condition == condition
    if condition["kind"] == "class":
        label_of = lambda c: condition["labels"][int(c[0])]  # noqa: E731
    else:
        by_vector = {tuple(v): k for k, v in _VECTORS.items()}
        label_of = lambda c: by_vector[tuple(float(x) for x in c)]  # noqa: E731
    for split in ("train", "eval"):
        seen = _check_split(str(tmp_path / split), label_of,
                            _ids_of(files["vocab"]))
        assert sorted(seen) == _LABELS


def test_sample_package_corpus(tmp_path):
    """`sample_corpus --package_names=json,html`: each line one docstring of
    a module in its `package`, against the docstrings read here with `ast`
    from the package's folder; the build's labels are the two packages,
    sorted."""
    import ast  # pylint: disable=import-outside-toplevel
    import sysconfig  # pylint: disable=import-outside-toplevel
    from data_pipeline import sample_corpus  # pylint: disable=import-outside-toplevel
    path = str(tmp_path / "packages.jsonl")
    stats = sample_corpus.write_package_corpus(path,
                                               packages=["json", "html"])
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert len(rows) == stats["documents"] and len(stats["packages"]) == 2
    root = sysconfig.get_paths()["stdlib"]
    for package in stats["packages"]:
        want = []
        for folder, dirs, names in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d not in (
                "test", "tests", "__pycache__"))
            for name in sorted(n for n in names if n.endswith(".py")):
                with open(os.path.join(folder, name), "rb") as f:
                    tree = ast.parse(f.read())
                nodes = sorted((n for n in ast.walk(tree) if isinstance(n, (
                    ast.Module, ast.ClassDef, ast.FunctionDef,
                    ast.AsyncFunctionDef))), key=lambda n: getattr(n, "lineno", 0))
                want.extend(s for n in nodes if ast.get_docstring(n)
                            for s in sample_corpus.clean_text(ast.get_docstring(n)))
        got = [s for r in rows if r["package"] == package
               for s in r["text"].split("\n")]
        assert got == want, package
    spec = conditions.resolve(path, sources.SourceConfig(
        input_format="jsonl", condition_field="package"))
    assert spec.labels == tuple(sorted(stats["packages"]))


def test_unconditioned_manifest_has_no_condition_key(files, tmp_path):
    _build(files, tmp_path, "lm")
    with open(tmp_path / "train" / "manifest.json", encoding="utf-8") as f:
        assert "condition" not in json.load(f)
    assert features.Manifest.read(str(tmp_path / "train")).condition is None


def test_label_sorting_and_manifest_check():
    assert conditions.sort_labels(["10", "9", "-1"]) == ["-1", "9", "10"]
    spec = conditions.ConditionSpec("class", 2, ("b", "a"), "x", ("a", "b"))
    assert (spec.encode(0, "w"), spec.encode(1, "w")) == (1, 0)
    with pytest.raises(ValueError, match="w: condition x has no label"):
        spec.encode(-1, "w")
    assert conditions.sort_labels(["b", "10", "a"]) == ["10", "a", "b"]
    with pytest.raises(ValueError, match="Manifest field `condition`"):
        features._check_condition({"kind": "class", "size": 2,
                                   "labels": ["a"]})


def _refused(files, tmp_path, match, task="lm", **source):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match) as info:
        _build(files, out, task, **source)
    assert "\n" not in str(info.value)
    assert not out.exists() or not os.listdir(out)  # nothing half-written
    return str(info.value)


def test_bad_inputs_one_line_nothing_written(files, tmp_path):
    lines = open(files["jsonl"], encoding="utf-8").read().splitlines()
    bad = tmp_path / "bad.jsonl"

    def write(change_line_5):
        rows = [json.loads(l) for l in lines]
        change_line_5(rows[4])
        bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return {**files, "jsonl": str(bad)}

    msg = _refused(write(lambda r: r.pop("label")), tmp_path,
                   r"bad.jsonl:5 has no condition field 'label'",
                   condition_field="label")
    assert "fields: ['target', 'text', 'vec']" in msg
    _refused(write(lambda r: r.pop("label")), tmp_path,
             r"bad.jsonl:5 has no condition field 'label'",
             condition_field="label", condition_labels=tuple(_LABELS))
    _refused(files, tmp_path, r"label 'gamma' is not among "
             r"--condition_labels='alpha,beta'", condition_field="label",
             condition_labels=("alpha", "beta"))
    _refused(write(lambda r: r["vec"].append(1.0)), tmp_path,
             r"bad.jsonl:5: condition .* has 4 values but .*docs|"
             r"bad.jsonl:5: condition .* has 4 values but .*:1's has 3",
             condition_field="vec")
    _refused(write(lambda r: r.update(label=[1.0])), tmp_path,
             r"bad.jsonl:5: condition .* is a vector but", condition_field="label")
    with pytest.raises(ValueError, match="are exclusive"):
        sources.SourceConfig(input_format="jsonl", condition_field="label",
                             condition_from_path="(a)")
    with pytest.raises(ValueError, match="has 0 capture groups"):
        sources.SourceConfig(condition_from_path=r"[a-z]+/doc")
    with pytest.raises(ValueError, match="needs --condition_field"):
        sources.SourceConfig(condition_labels=("a",))
    _refused(files, tmp_path, r"matches none of the 48 input files",
             input_format="text", condition_from_path=r"/(zzz)/")
    _refused(files, tmp_path, r"does not match input file '.*/beta/doc00.txt'",
             input_format="text", condition_from_path=r"/(alpha|gamma)/")


def test_inspect_names_the_condition():
    from data_pipeline import inspect  # pylint: disable=import-outside-toplevel
    example = {"input_ids": np.array([2, 9, 3]), "input_mask": np.ones(3, int),
               "condition": np.array([1])}
    assert inspect.format_example(example).endswith("\n    condition: [1]")
    example["condition_labels"] = ["alpha", "beta"]
    assert inspect.format_example(example).endswith(
        "\n    condition: beta (id 1)")


def test_nsp_with_one_document_per_condition(files, tmp_path):
    """One vector per document: every vector has one document, so NSP's
    random segments come from other documents (here, others' words), while
    segment A and the record's condition stay its own document's. (Class
    conditions keep both segments within the class: the NSP case of the
    round trip above.)"""
    path = tmp_path / "unique.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d, (label, sentences) in enumerate(files["docs"]):
            f.write(json.dumps({"text": "\n".join(sentences),
                                "vec": [float(d), 0.5]}) + "\n")
    builder.build(str(path), files["vocab"], str(tmp_path / "out"),
                  task=tasks.TaskConfig(**_TASKS["mlm_static_nsp"]),
                  source=sources.SourceConfig(input_format="jsonl",
                                              condition_field="vec"), **_BUILD)
    ids = _ids_of(files["vocab"])
    crossed = 0
    for ex in input_lib.iterate_numpy(str(tmp_path / "out" / "train")):
        tokens = ex["input_ids"].copy()
        k = int(ex["masked_lm_weights"].sum())
        tokens[ex["masked_lm_positions"][:k]] = ex["masked_lm_ids"][:k]
        own = ids[files["docs"][int(ex["condition"][0])][0]]
        used = ex["input_mask"] > 0
        a = {int(t) for t in tokens[used & (ex["segment_ids"] == 0)]}
        b = {int(t) for t in tokens[used & (ex["segment_ids"] == 1)]}
        content = set().union(*ids.values())
        assert a & content <= own
        if ex["next_sentence_labels"][0] == 0:
            assert b & content <= own
        crossed += bool((b & content) - own)
    assert crossed > 0
