"""Labelled fine-tuning data: readers (TSV, JSONL, a local TFDS builder),
label lists, Google's input layout and truncation, tf.data batches, and
every bad-input error."""

import dataclasses
import gzip
import json

import numpy as np
import pytest

from data_pipeline import labelled
from data_pipeline import wordpiece

# A tiny WordPiece vocabulary: ids are line numbers.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on",
         "mat", "##s", "dog", "."]
ID = {token: i for i, token in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def wp(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return wordpiece.WordPieceTokenizer(str(path), do_lower_case=True)


def _write(path, text):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def _jsonl(path, rows):
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def google_truncate_seq_pair(tokens_a, tokens_b, max_length):
    """Google BERT's `run_classifier._truncate_seq_pair`, verbatim."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def google_features(tokens_a, tokens_b, max_seq_length):
    """Google's `convert_single_example` layout, built by hand from ids (an
    empty second text is no pair: its `if tokens_b:`)."""
    tokens_a, tokens_b = list(tokens_a), None if tokens_b is None else list(tokens_b)
    if tokens_b:
        google_truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        tokens_a = tokens_a[:max_seq_length - 2]
    ids = [ID["[CLS]"]] + tokens_a + [ID["[SEP]"]]
    segments = [0] * len(ids)
    if tokens_b:
        ids += tokens_b + [ID["[SEP]"]]
        segments += [1] * (len(tokens_b) + 1)
    pad = max_seq_length - len(ids)
    return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad


def test_tsv_pairs_get_google_segment_ids(tmp_path, wp):
    path = _write(tmp_path / "train.tsv",
                  "id\tsentence1\tsentence2\tlabel\n"
                  "0\tThe cat sat\tthe dogs\tyes\n"
                  "\n"
                  "1\tthe mat\ton the mat .\tno\n"
                  "2\tcats\tdog\tyes\n")
    config = labelled.ReadConfig(text_field="sentence1", text_pair_field="sentence2")
    examples = labelled.read_examples(path, config)
    assert examples.lines == [2, 4, 5] and examples.pairs[1] == "on the mat ."
    spec = labelled.LabelSpec.from_examples(examples)
    assert spec.labels == ("no", "yes")
    arrays = labelled.encode(examples, wp, spec, 8)
    # [CLS] the cat sat [SEP] the dog [SEP]: "the dog ##s" loses "##s".
    assert arrays["input_ids"][0].tolist() == [2, 5, 6, 7, 3, 5, 11, 3]
    assert arrays["segment_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    # [CLS] the mat [SEP] on the mat [SEP]: the longer second text is cut.
    assert arrays["input_ids"][1].tolist() == [2, 5, 9, 3, 8, 5, 9, 3]
    assert arrays["segment_ids"][1].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # [CLS] cat ##s [SEP] dog [SEP] [PAD] [PAD]
    assert arrays["input_ids"][2].tolist() == [2, 6, 10, 3, 11, 3, 0, 0]
    assert arrays["input_mask"][2].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert arrays["segment_ids"][2].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert arrays["label"].tolist() == [1, 0, 1] and arrays["label"].dtype == np.int32
    for name in labelled.FEATURES:
        assert arrays[name].dtype == np.int32 and arrays[name].shape == (3, 8)


def test_packing_matches_google_for_every_length():
    rng = np.random.default_rng(0)
    pairs = [(la, lb) for la in range(0, 13) for lb in range(0, 13)]
    ids_a = [list(rng.integers(5, 13, la)) for la, _ in pairs]
    ids_b = [list(rng.integers(5, 13, lb)) for _, lb in pairs]
    for length in (4, 5, 8, 9, 16):
        got = labelled.pack(ids_a, ids_b, length, ID["[CLS]"], ID["[SEP]"])
        single = labelled.pack(ids_a, None, length, ID["[CLS]"], ID["[SEP]"])
        for i in range(len(pairs)):
            want = google_features(ids_a[i], ids_b[i], length)
            got_i = [got[k][i].tolist() for k in labelled.FEATURES]
            assert got_i == list(want), (length, pairs[i])
            want = google_features(ids_a[i], None, length)
            assert [single[k][i].tolist() for k in labelled.FEATURES] == list(want)


def test_jsonl_labels_by_task_and_label_list(tmp_path, wp):
    single = _jsonl(tmp_path / "s.jsonl", [{"text": "the cat", "label": 10},
                                           {"text": "the dog", "label": 2},
                                           {"text": "mat", "label": 2}])
    examples = labelled.read_examples(single, labelled.ReadConfig())
    spec = labelled.LabelSpec.from_examples(examples)
    assert spec.labels == ("2", "10")  # integers sort numerically
    arrays = labelled.encode(examples, wp, spec, 6)
    assert arrays["label"].tolist() == [1, 0, 0]
    assert arrays["input_ids"][0].tolist() == [2, 5, 6, 3, 0, 0]
    assert arrays["segment_ids"].sum() == 0

    multi = _jsonl(tmp_path / "m.jsonl", [{"text": "a", "tags": ["z", "b"]},
                                          {"text": "b", "tags": []},
                                          {"text": "c", "tags": ["b"]}])
    config = labelled.ReadConfig(task="multi_label", label_field="tags")
    spec = labelled.LabelSpec.from_examples(labelled.read_examples(multi, config))
    assert spec.labels == ("b", "z") and spec.num_labels == 2
    hot = labelled.encode(labelled.read_examples(multi, config), wp, spec, 4)["label"]
    np.testing.assert_array_equal(hot, [[1, 1], [0, 0], [1, 0]])
    assert hot.dtype == np.float32

    tsv = _write(tmp_path / "m.tsv", "text\ttags\nthe\tz, b\nmat\t\n")
    config = labelled.ReadConfig(task="multi_label", label_field="tags",
                                 label_separator=",")
    hot = labelled.encode(labelled.read_examples(tsv, config), wp, spec, 4)["label"]
    np.testing.assert_array_equal(hot, [[1, 1], [0, 0]])

    reg = _jsonl(tmp_path / "r.jsonl", [{"text": "a", "score": 1.5},
                                        {"text": "b", "score": "-2"}])
    examples = labelled.read_examples(reg, labelled.ReadConfig(
        task="regression", label_field="score"))
    spec = labelled.LabelSpec.from_examples(examples)
    assert spec.num_labels == 1
    values = labelled.encode(examples, wp, spec, 4)["label"]
    assert values.dtype == np.float32 and values.tolist() == [1.5, -2.0]

    # A byte-order mark, CRLF line ends, gzip, JSON booleans.
    bom = _write(tmp_path / "bom.tsv", "\ufefftext\tlabel\r\nthe\tpos\r\n")
    assert labelled.read_examples(bom, labelled.ReadConfig()).labels == ["pos"]
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"text": "a", "label": true}\n'
                                     b'{"text": "b", "label": false}\n'))
    examples = labelled.read_examples(str(packed), labelled.ReadConfig())
    assert examples.labels == ["true", "false"] and examples.lines == [1, 2]

    # Written with the run and read back; a test split without labels.
    spec = labelled.LabelSpec("single_label", ("neg", "pos"))
    spec.save(str(tmp_path))
    assert labelled.LabelSpec.load(str(tmp_path)) == spec
    assert json.loads((tmp_path / "labels.json").read_text()) == {
        "task": "single_label", "labels": ["neg", "pos"]}
    test = _write(tmp_path / "test.tsv", "index\ttext\n0\tthe cat\n")
    examples = labelled.read_examples(test, labelled.ReadConfig(),
                                      require_labels=False)
    arrays = labelled.encode(examples, wp, spec, 5)
    assert examples.labels is None and "label" not in arrays


def test_tfds_local_builder(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    rows = {"train": [("the cat", "a dog", 1, [0, 2]), ("the mat", "on it", 0, []),
                      ("sat", "cats", 1, [1])],
            "test": [("the dog", "sat", -1, [])]}
    tags = ["animal", "furniture", "plural"]

    class LabelledPairsToy(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        url_infos = None  # nothing is downloaded: no checksums file
        _checksums_path = None

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
                "sentence1": tfds.features.Text(), "sentence2": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=["not_entailment",
                                                         "entailment"]),
                "tags": tfds.features.Sequence(tfds.features.ClassLabel(names=tags))}))

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(name) for name in rows}

        def _generate_examples(self, split):
            for i, (a, b, label, tag) in enumerate(rows[split]):
                yield i, {"sentence1": a, "sentence2": b, "label": label, "tags": tag}

    data_dir = str(tmp_path / "tfds")
    LabelledPairsToy(data_dir=data_dir).download_and_prepare()
    config = labelled.ReadConfig(text_field="sentence1", text_pair_field="sentence2",
                                 tfds_data_dir=data_dir)
    train = labelled.read_examples("tfds:labelled_pairs_toy", config)
    assert sorted(zip(train.texts, train.pairs, train.labels)) == sorted(
        (a, b, ["not_entailment", "entailment"][y]) for a, b, y, _ in rows["train"])
    multi = labelled.read_examples("tfds:labelled_pairs_toy:train", dataclasses.replace(
        config, task="multi_label", label_field="tags"))
    assert sorted(zip(multi.texts, multi.labels)) == sorted(
        (a, tuple(tags[i] for i in t)) for a, _, _, t in rows["train"])
    test = labelled.read_examples("tfds:labelled_pairs_toy:test", config,
                                  require_labels=False)
    assert test.texts == ["the dog"] and test.labels is None
    with pytest.raises(ValueError, match="label -1"):
        labelled.read_examples("tfds:labelled_pairs_toy:test", config)
    with pytest.raises(ValueError, match=r"no feature 'sentence'.*--text_field"):
        labelled.read_examples("tfds:labelled_pairs_toy", labelled.ReadConfig(
            text_field="sentence", tfds_data_dir=data_dir))
    with pytest.raises(ValueError, match="without downloading"):
        labelled.read_examples("tfds:no_such_set:train", config)


@pytest.fixture(scope="module")
def spm_tokenizer(tmp_path_factory):
    from data_pipeline import tokenization
    root = tmp_path_factory.mktemp("spm")
    lines = ["The quick brown fox jumps over the lazy dog.",
             "Returns the value of x, or None when it is missing.",
             "A pair of short sentences: it jumps, a b c."] * 20
    corpus = _write(root / "corpus.txt", "\n".join(lines) + "\n")
    path = tokenization.train_sentencepiece([corpus], 40, str(root / "spm"), seed=0)
    return tokenization.SentencePieceTokenizer(path)


def test_sentencepiece_inputs(tmp_path, spm_tokenizer):
    """The SentencePiece path (one batched call per chunk) gives Google's
    layout of each text's own `encode`, across chunk boundaries."""
    texts = ["The quick brown fox.", "", "Returns the value of x." * 5, "a b c"]
    pairs = ["It jumps.", "Only a pair.", "short", "Returns None." * 9]
    path = _jsonl(tmp_path / "p.jsonl", [{"q": a, "p": b, "label": "x"}
                                         for a, b in zip(texts, pairs)])
    examples = labelled.read_examples(path, labelled.ReadConfig(
        text_field="q", text_pair_field="p"))
    arrays = labelled.encode(examples, spm_tokenizer, None, 24, chunk_size=3)
    assert "label" not in arrays
    # SentencePiece's [CLS]/[SEP] ids are the tiny vocabulary's (2, 3).
    assert (spm_tokenizer.layout.cls_id, spm_tokenizer.layout.sep_id) == (ID["[CLS]"], ID["[SEP]"])
    for i, (a, b) in enumerate(zip(texts, pairs)):
        want = google_features(spm_tokenizer.encode(a), spm_tokenizer.encode(b), 24)
        assert [arrays[k][i].tolist() for k in labelled.FEATURES] == list(want), i


def _arrays(n, length=4):
    ids = np.arange(n * length, dtype=np.int32).reshape(n, length) + 1
    return {"input_ids": ids, "input_mask": np.ones_like(ids),
            "segment_ids": np.zeros_like(ids),
            "label": np.arange(n, dtype=np.int32)}


def test_eval_dataset_keeps_every_example_once():
    batches = list(labelled.finetune_dataset(_arrays(7), 3, training=False))
    assert len(batches) == 3
    for batch in batches:
        assert batch["input_ids"].shape == (3, 4) and batch["weight"].shape == (3,)
    weight = np.concatenate([b["weight"].numpy() for b in batches])
    label = np.concatenate([b["label"].numpy() for b in batches])
    assert weight.tolist() == [1] * 7 + [0] * 2 and label[:7].tolist() == list(range(7))
    assert not batches[-1]["input_ids"].numpy()[1:].any()  # padding rows are zero


def test_train_dataset_epochs_seed_and_resume():
    dataset = labelled.finetune_dataset(_arrays(10), 4, training=True, seed=5)
    assert dataset.element_spec["input_ids"].shape == (4, 4)
    labels = np.concatenate([b["label"].numpy() for b in dataset.take(10)])
    # Batches cross epoch boundaries; every epoch is a permutation.
    for epoch in range(4):
        assert sorted(labels[10 * epoch:10 * epoch + 10]) == list(range(10))
    assert labels[:10].tolist() != labels[10:20].tolist()
    again = labelled.finetune_dataset(_arrays(10), 4, training=True, seed=5)
    assert np.concatenate([b["label"].numpy() for b in again.take(10)]).tolist() == \
        labels.tolist()
    other = labelled.finetune_dataset(_arrays(10), 4, training=True, seed=6)
    assert np.concatenate([b["label"].numpy() for b in other.take(3)]).tolist() != \
        labels[:12].tolist()
    resumed = labelled.finetune_dataset(_arrays(10), 4, training=True, seed=5,
                                        skip_batches=6)
    assert np.concatenate([b["label"].numpy() for b in resumed.take(4)]).tolist() == \
        labels[24:].tolist()
    first = next(iter(dataset))
    assert first["weight"].numpy().tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="fewer than one batch"):
        labelled.finetune_dataset(_arrays(3), 4, training=True)


BAD_INPUTS = {
    # name: (file name, content, read config, require_labels, error pattern)
    "eval label not in list": (
        "dev.tsv", "text\tlabel\nthe\tpos\nthe\tmaybe\n", {}, True,
        r"dev.tsv:3: label 'maybe' is not in the label list \['neg', 'pos'\].*--labels"),
    "missing column": (
        "train.tsv", "sentence\tlabel\nthe\tpos\n", {}, True,
        r"train.tsv:1: no column 'text' \(columns: \['sentence', 'label'\]\)\. "
        r"Pass --text_field"),
    "missing field": (
        "train.jsonl", '{"text": "a", "label": "pos"}\n{"text": "b"}\n', {}, True,
        r"train.jsonl:2: no field 'label' \(fields: \['text'\]\)\. Pass --label_field"),
    "empty tsv split": ("train.tsv", "text\tlabel\n\n", {}, True,
                        r"train.tsv' holds no example"),
    "empty jsonl split": ("train.jsonl", "\n", {}, True,
                          r"train.jsonl' holds no example"),
    "multi-label number": (
        "train.jsonl", '{"text": "a", "label": 3}\n',
        {"task": "multi_label"}, True,
        r"train.jsonl:1: multi-label field 'label' must be a list of label names, "
        r"or a string joined by --label_separator.*Received: 3"),
    "multi-label string without separator": (
        "train.tsv", "text\tlabel\nthe\ta,b\n", {"task": "multi_label"}, True,
        r"train.tsv:2: multi-label field 'label' must be .*--label_separator"),
    "regression not a number": (
        "train.tsv", "text\tlabel\nthe\t1.0\nthe\thigh\n", {"task": "regression"}, True,
        r"train.tsv:3: field 'label' must be a finite number.*Received: 'high'"),
    "pair in some rows only": (
        "train.jsonl", '{"text": "a", "b": "x", "label": "pos"}\n'
        '{"text": "c", "label": "neg"}\n', {"text_pair_field": "b"}, True,
        r"train.jsonl:2: pair field 'b' is missing in this row but present in others"),
    "ragged tsv row": ("train.tsv", "text\tlabel\nthe\tpos\textra\n", {}, True,
                       r"train.tsv:2: 3 tab-separated fields, the header has 2"),
    "test label not in list": (
        "test.jsonl", '{"text": "a", "label": "neutral"}\n', {}, False,
        r"test.jsonl:1: label 'neutral' is not in the label list"),
    "not utf-8": ("train.tsv", "text\tlabel\nthe\tpos\nd\u00e9j\u00e0\tneg\n".encode(
        "latin-1"), {}, True, r"train.tsv:3 is not UTF-8 \(byte 1 of the line.*iconv"),
    "not gzip": ("train.jsonl.gz", b"not gzip", {}, True,
                 r"train.jsonl.gz is not a readable gzip file"),
    "bad json": ("train.jsonl", '{"text": "a",\n', {}, True,
                 r"train.jsonl:1 is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_naming_file_and_row(case, tmp_path, wp):
    name, content, options, require_labels, pattern = BAD_INPUTS[case]
    path = _write(tmp_path / name, content)
    config = labelled.ReadConfig(**options)
    spec = labelled.LabelSpec("single_label", ("neg", "pos"))
    with pytest.raises(ValueError, match=pattern) as error:
        examples = labelled.read_examples(path, config, require_labels=require_labels)
        labelled.encode(examples, wp, spec, 8)
    assert "\n" not in str(error.value)


def test_bad_label_lists_and_flags(tmp_path):
    with pytest.raises(ValueError, match=r"repeats \['a'\]"):
        labelled.LabelSpec("single_label", ("a", "b", "a"))
    with pytest.raises(ValueError, match="needs at least 2 labels"):
        labelled.LabelSpec.from_examples(labelled.read_examples(
            _write(tmp_path / "one.tsv", "text\tlabel\na\tx\nb\tx\n"),
            labelled.ReadConfig()))
    with pytest.raises(ValueError, match="--task must be one of"):
        labelled.ReadConfig(task="ranking")
    with pytest.raises(ValueError, match="--label_separator is for --task=multi_label"):
        labelled.ReadConfig(label_separator=",")
    with pytest.raises(ValueError, match="does not exist"):
        labelled.read_examples(str(tmp_path / "none.tsv"), labelled.ReadConfig())
    (tmp_path / "labels.json").write_text('{"labels": ["a"]}')
    with pytest.raises(ValueError, match="keys"):
        labelled.LabelSpec.load(str(tmp_path))


def test_mixed_tasks_by_size_and_by_weight():
    one = _arrays(6)  # single-label task: label int32 (n,)
    two = {**_arrays(2), "label": np.eye(3, dtype=np.float32)[[0, 2]]}  # multi-hot
    mixed = labelled.mix_tasks([one, two])
    assert mixed["task"].tolist() == [0] * 6 + [1] * 2
    assert mixed["label_0"].tolist() == list(range(6)) + [0, 0]
    np.testing.assert_array_equal(mixed["label_1"][6:], two["label"])
    assert not mixed["label_1"][:6].any() and mixed["label_1"].dtype == np.float32
    by_size = labelled.finetune_dataset(mixed, 4, training=True, seed=1)
    tasks = np.concatenate([b["task"].numpy() for b in by_size.take(8)])
    assert np.bincount(tasks).tolist() == [24, 8]  # 4 epochs of 6 + 2 rows
    # Equal weights: each 8-row epoch holds 4 rows of each task, task 1's
    # two rows each twice.
    weighted = labelled.finetune_dataset(mixed, 4, training=True, seed=1,
                                         task_weights=[1, 1])
    batches = list(weighted.take(6))
    tasks = np.concatenate([b["task"].numpy() for b in batches])
    ids = np.concatenate([b["input_ids"].numpy()[:, 0] for b in batches])
    for epoch in range(3):
        rows = slice(8 * epoch, 8 * epoch + 8)
        assert np.bincount(tasks[rows]).tolist() == [4, 4]
        assert sorted(ids[rows][tasks[rows] == 1].tolist()) == [1, 1, 5, 5]
        assert len(set(ids[rows][tasks[rows] == 0].tolist())) == 4
    resumed = labelled.finetune_dataset(mixed, 4, training=True, seed=1,
                                        task_weights=[1, 1], skip_batches=3)
    assert np.concatenate([b["task"].numpy() for b in resumed.take(3)]).tolist() == \
        tasks[12:].tolist()
    with pytest.raises(ValueError, match="task_weights must be 2 finite numbers"):
        labelled.finetune_dataset(mixed, 4, training=True, task_weights=[1])
    with pytest.raises(ValueError, match="share one max_seq_length"):
        labelled.mix_tasks([one, _arrays(2, length=5)])
