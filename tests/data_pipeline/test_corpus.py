import pytest

from data_pipeline import corpus
from data_pipeline import sources
from tests.data_pipeline import reference


def _read(patterns):
    return list(sources.read_documents(patterns, sources.SourceConfig()))


def test_round_trip_and_order(tmp_path):
    docs_b = [["Second file first sentence.", "Two words"], ["Only one here."]]
    docs_a = [["A  sentence\u2028with odd\twhitespace.", "", "Another one."]]
    stats_b = corpus.write_documents(docs_b, str(tmp_path / "b.txt"))
    stats_a = corpus.write_documents(docs_a + [[""]], str(tmp_path / "a.txt"))
    assert stats_b == {"documents": 2, "sentences": 3,
                       "bytes": (tmp_path / "b.txt").stat().st_size}
    assert stats_a["documents"] == 1 and stats_a["sentences"] == 2
    got = _read(str(tmp_path / "*.txt"))
    assert got == [["A sentence with odd whitespace.", "Another one."]] + docs_b
    both = f"{tmp_path / 'b.txt'},{tmp_path / 'a.txt'}"
    assert _read(both) == got == reference.read_documents(both)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_missing_pattern_named(tmp_path):
    (tmp_path / "a.txt").write_text("x y\n")
    missing = str(tmp_path / "nope*.txt")
    with pytest.raises(ValueError, match="nope"):
        _read([str(tmp_path / "a.txt"), missing])


def test_blank_lines_split_documents(tmp_path):
    (tmp_path / "c.txt").write_text("\n\na b\nc d\n\n\n\ne f\n")
    assert _read(str(tmp_path / "c.txt")) == [["a b", "c d"], ["e f"]]
    assert reference.read_documents(str(tmp_path / "c.txt")) == [
        ["a b", "c d"], ["e f"]]
