from data_pipeline import sample_corpus
from tests.data_pipeline import reference


def test_clean_text():
    text = ("Return the thing. It is big!\n"
            "Wrapped line\ncontinues here.\n\n"
            ">>> print(1)\n... more\n    indented code = 1\n"
            "Ok\n\n\"Quoted\" start? Yes indeed.")
    assert sample_corpus.clean_text(text) == [
        "Return the thing.", "It is big!", "Wrapped line continues here.",
        "\"Quoted\" start?", "Yes indeed."]


def test_sample_corpus_size(tmp_path):
    path = str(tmp_path / "sample.txt")
    stats = sample_corpus.write_sample_corpus(path)
    assert stats["documents"] >= 500  # 79 help topics + one per stdlib module
    assert stats["bytes"] >= 1_000_000
    docs = reference.read_documents(path)
    assert len(docs) == stats["documents"]
    assert sum(len(d) for d in docs) == stats["sentences"]
    assert all(len(s.split()) >= 2 for d in docs[:500] for s in d)
    assert not any(s.startswith(">>>") for d in docs for s in d)
