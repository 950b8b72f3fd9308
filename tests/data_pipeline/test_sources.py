import gzip
import json
import os

import numpy as np
import pytest

from data_pipeline import builder
from data_pipeline import sources
from data_pipeline import tasks


def _docs(inputs, **kwargs):
    return list(sources.read_documents(inputs, sources.SourceConfig(**kwargs)))


def test_sentence_splitting_english_and_chinese():
    assert sources.split_sentences(
        "It works. Does it? Yes! 3 cats (e.g. this) stay.") == [
            "It works.", "Does it?", "Yes!", "3 cats (e.g. this) stay."]
    assert sources.split_sentences("今天天气很好。我们去公园吧！你来吗？“好。”走") == [
        "今天天气很好。", "我们去公园吧！", "你来吗？", "“好。”", "走"]


def test_text_gz_lines_and_jsonl(tmp_path):
    text = "First one.\nSecond one.\n\nOther doc.\n"
    (tmp_path / "a.txt").write_text(text)
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    expected = [["First one.", "Second one."], ["Other doc."]]
    assert _docs(str(tmp_path / "a.txt")) == expected
    assert _docs(str(tmp_path / "b.txt.gz")) == expected
    (tmp_path / "c.txt").write_text("Doc one. Has two.\n\nDoc two.\n")
    assert _docs(str(tmp_path / "c.txt"), input_format="lines",
                 split_sentences=True) == [["Doc one.", "Has two."],
                                           ["Doc two."]]
    assert _docs(str(tmp_path / "c.txt"), input_format="lines") == [
        ["Doc one. Has two."], ["Doc two."]]
    rows = [{"body": "A b. C d.", "id": 1}, {"body": "你好。再见。"}]
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    assert _docs(str(tmp_path / "d.jsonl.gz"), input_format="jsonl",
                 text_field="body", split_sentences=True) == [
                     ["A b.", "C d."], ["你好。", "再见。"]]
    (tmp_path / "e.jsonl").write_text(json.dumps(
        {"src": "Question here", "tgt": "Answer"}) + "\n")
    assert _docs(str(tmp_path / "e.jsonl"), input_format="jsonl",
                 text_field="src", target_field="tgt") == [
                     ["Question here", "Answer"]]


def test_bad_sources_name_the_culprit(tmp_path, tokenizer_path):
    (tmp_path / "bad.txt.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(ValueError, match="bad.txt.gz.*not a readable gzip"):
        _docs(str(tmp_path / "bad.txt.gz"))
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"body": "no"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2 has no field 'text'"
                                         r".*\['body'\]"):
        _docs(str(tmp_path / "x.jsonl"), input_format="jsonl")
    with pytest.raises(ValueError, match="--input_format"):
        sources.SourceConfig(input_format="csv")
    # Through the build: the error names the file, the output dir stays empty.
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="bad.txt.gz"):
        builder.build(str(tmp_path / "bad.txt.gz"), tokenizer_path, str(out))
    assert not out.exists()
    with pytest.raises(ValueError, match="x.jsonl:2"):
        builder.build(str(tmp_path / "x.jsonl"), tokenizer_path, str(out),
                      source=sources.SourceConfig(input_format="jsonl"))
    assert not out.exists()


def test_read_progress_counts_bytes_on_disk(tmp_path):
    """The ETA's progress: bytes read from disk, compressed ones for .gz,
    against the files' total size; it advances while a file is read."""
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghij"), 6)) for _ in range(500)]
    lines = [" ".join(rng.choice(words, 12)) + "\n" for _ in range(20000)]
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.writelines(lines)
    (tmp_path / "b.txt").write_text("".join(lines[:3000]))
    sizes = [os.path.getsize(tmp_path / n) for n in ("a.txt.gz", "b.txt")]
    assert sizes[0] < len("".join(lines)) / 2  # well compressed
    progress = sources.ReadProgress()
    seen = []
    config = sources.SourceConfig(input_format="lines")
    for _ in sources.read_documents(str(tmp_path / "*.txt*"), config,
                                    progress):
        seen.append(progress.done)
    assert progress.total == sum(sizes) and seen[-1] == sum(sizes)
    assert seen == sorted(seen) and len(seen) == 23000
    # Halfway through the .gz file, about half of its compressed bytes.
    assert 0.3 < seen[10000] / sizes[0] < 0.7, (seen[10000], sizes[0])
    assert progress.fraction == 1.0


def test_progress_eta_from_fraction_read(caplog):
    progress = sources.ReadProgress()
    logged = builder._Progress(progress)  # pylint: disable=protected-access
    logged.start -= 10.0  # 10 s in
    progress.total, progress.done = 400, 100  # a quarter read: 30 s left
    with caplog.at_level("INFO"):
        logged.update(5, 7, 1000, force=True)
    assert "ETA 30 s" in caplog.text, caplog.text
    progress.total = None  # unknown total
    with caplog.at_level("INFO"):
        logged.update(0, 0, 0, force=True)
    assert "ETA ?" in caplog.text, caplog.text


def test_tfds_text_folder_offline(tmp_path, tokenizer_path):
    from data_pipeline import tfds_builder  # pylint: disable=import-outside-toplevel
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Alpha one. Alpha two.\nAlpha three.\n")
    (folder / "sub" / "b.txt").write_text("Beta only.\n")
    (folder / "skip.md").write_text("Not a text file.\n")
    data_dir = str(tmp_path / "tfds")
    name = tfds_builder.prepare_text_folder(str(folder), data_dir)
    config = dict(input_format="tfds", tfds_data_dir=data_dir,
                  split_sentences=True)
    progress = sources.ReadProgress()
    assert list(sources.read_documents(
        name, sources.SourceConfig(**config), progress)) == [
        ["Alpha one.", "Alpha two.", "Alpha three."], ["Beta only."]]
    assert (progress.done, progress.total) == (2, 2)  # the split's examples
    with pytest.raises(ValueError, match="no feature --text_field='body'"):
        _docs(name, **dict(config, text_field="body"))
    with pytest.raises(ValueError, match="'not_there'.*without downloading"):
        _docs("not_there", **config)
    manifests = builder.build(
        name, tokenizer_path, str(tmp_path / "out"),
        source=sources.SourceConfig(**config),
        task=tasks.TaskConfig(max_seq_length=16, max_predictions_per_seq=3))
    assert manifests["train"].num_examples >= 2
    assert "tfds: text_folder" in manifests["train"].source
    assert os.path.exists(tmp_path / "out" / "train" / "manifest.json")
