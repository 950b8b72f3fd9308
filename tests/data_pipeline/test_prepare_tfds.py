"""python -m data_pipeline.prepare_tfds: text files -> a named TFDS dataset
that `build --input_format=tfds` reads."""

import os
import subprocess
import sys

from data_pipeline import sources

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _start(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "data_pipeline.prepare_tfds", *args], cwd=_REPO,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_prepare_tfds_cli(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "a" / "b").mkdir(parents=True)
    (corpus / "one.txt").write_text("First doc. Still first.\n")
    (corpus / "a" / "b" / "two.txt").write_text("Second doc.\nIts line two.\n")
    (corpus / "a" / "skip.md").write_text("Not matched.\n")
    data_dir = str(tmp_path / "tfds")
    runs = {
        "ok": _start(f"--input={corpus}/**/*.txt", "--name=my_corpus",
                     f"--data_dir={data_dir}"),
        "name": _start(f"--input={corpus}/**/*.txt", "--name=My-Corpus",
                       f"--data_dir={data_dir}"),
        "input": _start(f"--input={corpus}/none/*.txt", "--name=x",
                        f"--data_dir={data_dir}"),
    }
    results = {k: (p.communicate(timeout=300), p.returncode)
               for k, p in runs.items()}
    (out, err), code = results["ok"]
    assert code == 0, err[-2000:]
    last = out.splitlines()[-1]  # TFDS prints its own lines before
    assert last.startswith("my_corpus: 2 file(s); build with --input_format="
                           "tfds --input=my_corpus"), out
    for key, needle in (("name", "--name must be a snake_case dataset name"),
                        ("input", "--input pattern")):
        (_, err), code = results[key]
        errors = [l for l in err.splitlines() if l.startswith("error: ")]
        assert code == 2 and len(errors) == 1, err[-2000:]
        assert needle in errors[0] and "Traceback" not in err, err[-2000:]
    # Read back by name from its files (as build --input_format=tfds does),
    # one document per file, in path order (a/b/two.txt, one.txt).
    config = sources.SourceConfig(input_format="tfds", tfds_data_dir=data_dir,
                                  split_sentences=True)
    progress = sources.ReadProgress()
    docs = list(sources.read_documents("my_corpus", config, progress))
    assert docs == [["Second doc.", "Its line two."],
                    ["First doc.", "Still first."]]
    assert (progress.done, progress.total) == (2, 2)
