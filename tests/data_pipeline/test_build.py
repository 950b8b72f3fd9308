import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from data_pipeline import build
from data_pipeline import corpus
from data_pipeline import features
from data_pipeline import input as input_lib
from data_pipeline import tasks

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
NUM_DOCS = 120
WORDS = ("the value of a list is returned when the object has "
         "a name and an attribute").split()


@pytest.fixture(scope="module")
def numbered_corpus(tmp_path_factory):
    """Documents whose every sentence starts with "Document N"."""
    rng = np.random.default_rng(0)
    docs = []
    for d in range(NUM_DOCS):
        docs.append([f"Document {d} says " + " ".join(rng.choice(WORDS, 5))
                     + "." for _ in range(int(rng.integers(1, 4)))])
    path = str(tmp_path_factory.mktemp("numbered") / "docs.txt")
    corpus.write_documents(docs, path)
    return path


def _doc_ids(data_dir, tokenizer):
    """Document numbers appearing in a split (masks undone, then decoded)."""
    found = set()
    for ex in input_lib.iterate_numpy(data_dir):
        ids = ex["input_ids"].copy()
        k = int(ex["masked_lm_weights"].sum())
        ids[ex["masked_lm_positions"][:k]] = ex["masked_lm_ids"][:k]
        text = tokenizer.decode(ids[ex["input_mask"] > 0].tolist())
        found.update(int(n) for n in re.findall(r"Document (\d+)", text))
    return found


def test_build_splits_by_document(numbered_corpus, tokenizer_path, tokenizer,
                                  tmp_path):
    out = str(tmp_path / "data")
    manifests = build.build_mlm(numbered_corpus, tokenizer_path, out,
                                max_seq_length=64, max_predictions_per_seq=8,
                                short_seq_prob=0.0, seed=5, num_shards=3,
                                eval_fraction=0.2)
    assert sorted(os.listdir(out)) == ["eval", "train"]
    train, evl = manifests["train"], manifests["eval"]
    assert train == features.Manifest.read(os.path.join(out, "train"))
    assert train.num_shards == 3 and evl.split == "eval"
    assert train.vocab_size == tokenizer.vocab_size
    assert train.tokenizer_sha256 == tokenizer.sha256
    for name, manifest in manifests.items():
        files = sorted(os.listdir(os.path.join(out, name)))
        assert files == sorted(manifest.shard_files + ["manifest.json"])
        assert sum(1 for _ in input_lib.iterate_numpy(
            os.path.join(out, name))) == manifest.num_examples
    train_docs = _doc_ids(os.path.join(out, "train"), tokenizer)
    eval_docs = _doc_ids(os.path.join(out, "eval"), tokenizer)
    assert not train_docs & eval_docs
    assert train_docs | eval_docs == set(range(NUM_DOCS))
    assert eval_docs == {d for d in range(NUM_DOCS)
                         if tasks.is_eval_document(5, d, 0.2)}
    assert len(train_docs) <= train.num_examples < 2 * len(train_docs)


def test_build_deterministic(numbered_corpus, tokenizer_path, tmp_path):
    def shard_bytes(seed, name):
        out = str(tmp_path / name)
        build.build_mlm(numbered_corpus, tokenizer_path, out, seed=seed,
                        max_seq_length=32, max_predictions_per_seq=5,
                        num_shards=2, dupe_factor=2, overwrite=True)
        train = os.path.join(out, "train")
        return [open(os.path.join(train, f), "rb").read()
                for f in sorted(os.listdir(train)) if f.endswith(".tfrecord")]

    assert shard_bytes(1, "a") == shard_bytes(1, "b")
    assert shard_bytes(1, "a") != shard_bytes(2, "c")


def _assert_clean(out):
    assert not os.path.exists(os.path.join(out, "train"))
    assert not os.path.exists(os.path.join(out, "eval"))
    if os.path.exists(out):
        assert os.listdir(out) == []


def test_build_errors_leave_nothing(numbered_corpus, tokenizer_path, tmp_path):
    out = str(tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n\n")
    with pytest.raises(ValueError, match="zero training instances"):
        build.build_mlm(str(empty), tokenizer_path, out)
    _assert_clean(out)
    with pytest.raises(ValueError, match="missing"):
        build.build_mlm(str(tmp_path / "missing*.txt"), tokenizer_path, out)
    _assert_clean(out)
    with pytest.raises(ValueError, match=r"--max_seq_length.*max_seq_length=4"):
        build.build_mlm(numbered_corpus, tokenizer_path, out, max_seq_length=4)
    with pytest.raises(ValueError, match="max_predictions_per_seq=40"):
        build.build_mlm(numbered_corpus, tokenizer_path, out, max_seq_length=32,
                        max_predictions_per_seq=40)
    with pytest.raises(ValueError, match="nope.model"):
        build.build_mlm(numbered_corpus, str(tmp_path / "nope.model"), out)
    _assert_clean(out)
    one_doc = tmp_path / "one.txt"
    one_doc.write_text("Document 1 says hello there.\n")
    seed = next(s for s in range(100) if not tasks.is_eval_document(s, 0, 0.5))
    with pytest.raises(ValueError, match="--eval_fraction=0.5"):
        build.build_mlm(str(one_doc), tokenizer_path, out, seed=seed,
                        eval_fraction=0.5)
    _assert_clean(out)


def test_failed_rebuild_keeps_previous(numbered_corpus, tokenizer_path,
                                       tmp_path):
    out = str(tmp_path / "out")
    first = build.build_mlm(numbered_corpus, tokenizer_path, out,
                            max_seq_length=32, max_predictions_per_seq=5)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError):
        build.build_mlm(str(empty), tokenizer_path, out, overwrite=True)
    assert os.listdir(out) == ["train"]
    assert features.Manifest.read(os.path.join(out, "train")) == first["train"]
    second = build.build_mlm(numbered_corpus, tokenizer_path, out, seed=9,
                             max_seq_length=32, max_predictions_per_seq=5,
                             overwrite=True)
    assert os.listdir(out) == ["train"]
    assert features.Manifest.read(os.path.join(out, "train")).seed == 9
    assert second["train"].seed == 9


def _cli(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=_REPO,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_errors_are_one_line(numbered_corpus, tokenizer_path, tmp_path):
    result = _cli("data_pipeline.build", "--task=mlm", "--input_format=jsonl",
                  "--text_field=body", f"--input={numbered_corpus}",
                  f"--tokenizer={tokenizer_path}",
                  f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "docs.txt:1 is not valid JSON" in errors[0]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "o")
    result = _cli("data_pipeline.train_tokenizer", "--input=/nonexistent/*.txt",
                  "--vocab_size=100", f"--output={tmp_path / 'spm'}")
    assert result.returncode == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "/nonexistent/*.txt" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag,needle", [
    ("--split_sentences", "--split_sentences does nothing with --task=mlm "
     "without --next_sentence"),
    ("--next_sentence", "--next_sentence: 2 of 6 documents have one sentence")])
def test_cli_flags_without_effect_warn(tokenizer_path, tmp_path, flag, needle):
    """A flag that does nothing, or NSP over one-sentence documents (whose
    pairs always take B from another document), is one warning line, with
    the count of such documents; the build still succeeds."""
    docs = [["Alpha one is here.", "Alpha two is there."], ["Beta only."],
            ["Gamma one went.", "Gamma two came.", "Gamma three."],
            ["Delta alone here."], ["Eps one.", "Eps two."],
            ["Zeta a.", "Zeta b."]]
    path = str(tmp_path / "docs.txt")
    corpus.write_documents(docs, path)
    start = time.perf_counter()
    result = _cli("data_pipeline.build", f"--input={path}", flag,
                  f"--tokenizer={tokenizer_path}", "--max_seq_length=16",
                  "--max_predictions_per_seq=2",
                  f"--output_dir={tmp_path / 'o'}")
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [l for l in result.stderr.splitlines() if needle in l]
    assert len(lines) == 1, result.stderr[-2000:]
    other = ("have one sentence" if flag == "--split_sentences"
             else "does nothing")
    assert other not in result.stderr
    # The reported time is the build's, not importing TensorFlow's (most of
    # this process's time for six documents).
    seconds = float(re.search(r"in (\d+\.\d) s", result.stdout).group(1))
    assert seconds < 0.5 * wall, (seconds, wall)
