import unicodedata

import numpy as np
import pytest

from data_pipeline import builder
from data_pipeline import input as input_lib
from data_pipeline import masking
from data_pipeline import tasks
from data_pipeline import wordpiece

VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]",
         "[MASK]", "hello", "world", ",", "!", ".", "'", "un", "##aff",
         "##able", "a", "b", "t", "don", "héllo", "中", "国", "人", "民",
         "the", "cat", "sat", "on", "mat", "##s"]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(path)


def test_basic_tokenization_hand_checked():
    assert wordpiece.basic_tokenize("Hello, World!") == [
        "hello", ",", "world", "!"]
    assert wordpiece.basic_tokenize("Héllo Ünïcode") == ["hello", "unicode"]
    assert wordpiece.basic_tokenize("Héllo", do_lower_case=False) == ["Héllo"]
    assert wordpiece.basic_tokenize("Héllo", strip_accents=False) == ["héllo"]
    assert wordpiece.basic_tokenize("don't a.b") == [
        "don", "'", "t", "a", ".", "b"]
    # NUL and zero-width space (category Cf) are removed, tab splits.
    assert wordpiece.basic_tokenize("a\x00b\u200bc\td") == ["abc", "d"]
    assert wordpiece.basic_tokenize("我是ab中国人。") == [
        "我", "是", "ab", "中", "国", "人", "。"]


def test_wordpiece_ids_and_word_starts(vocab_file):
    tok = wordpiece.WordPieceTokenizer(vocab_file)
    assert tok.tokenize("Unaffable cats!") == [
        "un", "##aff", "##able", "cat", "##s", "!"]
    ids, starts = tok.encode_with_starts(["Unaffable cats!", "zzz hello"])
    assert starts[0] == [1, 0, 0, 1, 0, 1]
    assert [tok.id_to_piece(i) for i in ids[1]] == ["[UNK]", "hello"]
    assert tok.decode(ids[0]) == "unaffable cats !"
    assert tok.layout.special_ids == {"pad": 0, "unk": 3, "cls": 4, "sep": 5,
                                      "mask": 6}
    assert tok.layout.reserved_id_ranges == ((1, 3),)
    cased = wordpiece.WordPieceTokenizer(vocab_file, do_lower_case=False,
                                         strip_accents=False)
    assert cased.tokenize("héllo Hello") == ["héllo", "[UNK]"]


def test_chinese_whole_word_masking_with_stub_segmenter(vocab_file):
    def segment(text):  # Stub: "中国" and "人民" are words.
        out, i = [], 0
        while i < len(text):
            step = 2 if text[i:i + 2] in ("中国", "人民") else 1
            while text[i:i + step].isascii() and text[i + step:i + step + 1
                                                      ].isascii() and (
                    i + step < len(text)):
                step += 1
            out.append(text[i:i + step])
            i += step
        return out

    plain = wordpiece.WordPieceTokenizer(vocab_file)
    tok = wordpiece.WordPieceTokenizer(vocab_file, segmenter=segment)
    assert plain.encode_with_starts(["中国人民"])[1] == [[1, 1, 1, 1]]
    ids, starts = tok.encode_with_starts(["中国人民hello"])
    assert starts == [[1, 0, 1, 0, 1]]
    tokens = np.array([4] + ids[0][:4] + [5], np.int32)
    ws = np.array([1] + starts[0][:4] + [1], bool)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        m = masking.mask_batch(tokens[None], [len(tokens)], ws[None], rng,
                               max_predictions_per_seq=4, masked_lm_prob=0.5,
                               layout=tok.layout)
        k = int(m.num_predictions[0])
        positions = tuple(m.masked_lm_positions[0, :k].tolist())
        assert positions in ((1, 2), (3, 4))
        seen.add(positions)
    assert len(seen) == 2
    with pytest.raises(ValueError, match="segmenter.*changed the text"):
        wordpiece.WordPieceTokenizer(
            vocab_file, segmenter=lambda t: ["x"]).encode("中国")


def test_vocab_errors(tmp_path):
    bad = tmp_path / "vocab.txt"
    bad.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"vocab.txt.*lacks.*\['\[MASK\]'\]"):
        wordpiece.WordPieceTokenizer(str(bad))
    out = tmp_path / "out"
    (tmp_path / "c.txt").write_text("hello world\n")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        builder.build(str(tmp_path / "c.txt"), str(bad), str(out))
    assert not out.exists()
    with pytest.raises(ValueError, match="nope.txt.*does not exist"):
        wordpiece.WordPieceTokenizer(str(tmp_path / "nope.txt"))


def test_build_with_wordpiece(vocab_file, tmp_path):
    (tmp_path / "c.txt").write_text(
        "The cat sat on the mat.\nHello world!\n\nUnaffable cats.\n" * 5)
    manifests = builder.build(
        str(tmp_path / "c.txt"), vocab_file, str(tmp_path / "out"),
        task=tasks.TaskConfig(masking="dynamic", max_seq_length=16,
                              max_predictions_per_seq=3))
    manifest = manifests["train"]
    assert manifest.tokenizer_kind == "wordpiece"
    assert manifest.special_ids["mask"] == 6
    assert manifest.reserved_id_ranges == [[1, 3]]
    assert manifest.tokenizer_options["do_lower_case"] is True
    batch = next(iter(input_lib.make_dataset(str(tmp_path / "out" / "train"),
                                             4, seed=0)))
    ids = batch["input_ids"].numpy()
    assert (ids[:, 0] == 4).all()  # [CLS] from the vocab
    assert not np.isin(ids, [1, 2]).any()  # never a reserved id


CASED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "The", "the", "Cat",
         "cat", "sat", "Paris", ".", "##s"]


def test_cased_vocabulary_is_read_cased(tmp_path, caplog):
    """A cased vocabulary (upper-case pieces) is not lower-cased unless asked;
    a tokenizer_config.json beside it decides first; the choice is logged."""
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(CASED) + "\n", encoding="utf-8")
    with caplog.at_level("INFO"):
        tok = wordpiece.WordPieceTokenizer(str(path))
    assert tok.do_lower_case is False and "do_lower_case=False (cased" in caplog.text
    assert tok.tokenize("The Cats sat in Paris.") == [
        "The", "Cat", "##s", "sat", "[UNK]", "Paris", "."]
    # Forced lower-casing maps the capitalised words to other pieces or [UNK].
    lower = wordpiece.WordPieceTokenizer(str(path), do_lower_case=True)
    assert lower.tokenize("The Paris") == ["the", "[UNK]"]
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    assert wordpiece.WordPieceTokenizer(str(path)).do_lower_case is True
    # An uncased vocabulary (no upper-case piece) stays uncased.
    uncased = tmp_path / "u" / "vocab.txt"
    uncased.parent.mkdir()
    uncased.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert wordpiece.WordPieceTokenizer(str(uncased)).do_lower_case is True


def test_many_unknown_tokens_warn_once(tmp_path, caplog):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(CASED) + "\n", encoding="utf-8")
    tok = wordpiece.WordPieceTokenizer(str(path), do_lower_case=True)
    tok.encode_with_starts(["The cat sat.", "Paris"])  # 1 [UNK] of 5 tokens: 20%
    tok.encode_with_starts(["Paris Paris"])
    warnings = [r.getMessage() for r in caplog.records if "[UNK]" in r.getMessage()]
    assert warnings == [
        f"20.0% of the tokens of the first batch are [UNK] (1 of 5) with {path}, "
        "do_lower_case=True: check the vocabulary and --do_lower_case."]
    caplog.clear()
    cased = wordpiece.WordPieceTokenizer(str(path))
    cased.encode_with_starts(["The cat sat.", "Paris"] * 10)  # no [UNK]
    assert "[UNK]" not in caplog.text


def test_build_with_cased_vocabulary_records_the_choice(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(CASED) + "\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("The Cats sat.\nThe cat sat in Paris.\n\nCats sat.\n" * 5)
    manifest = builder.build(
        str(tmp_path / "c.txt"), str(path), str(tmp_path / "out"),
        task=tasks.TaskConfig(masking="dynamic", max_seq_length=16,
                              max_predictions_per_seq=3))["train"]
    assert manifest.tokenizer_options["do_lower_case"] is False
    ids = [b["input_ids"].numpy() for b in input_lib.make_dataset(
        str(tmp_path / "out" / "train"), 2, seed=0).take(4)]
    assert any(CASED.index("Paris") in x or CASED.index("Cat") in x
               for x in ids)


def test_ascii_fast_path_equals_the_character_rules():
    """ASCII text takes a regex path: the same tokens as the per-character
    rules (reached by appending a non-ASCII word) and as transformers'
    BasicTokenizer, on random strings of every ASCII character."""
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in range(128)] + ["a", "Z", "7", " "] * 8
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
             for _ in range(300)]
    BasicTokenizer = None
    for module in ("tokenization_bert_legacy", "tokenization_bert"):  # v5, v4
        try:
            BasicTokenizer = __import__(f"transformers.models.bert.{module}",
                                        fromlist=["BasicTokenizer"]).BasicTokenizer
            break
        except (ImportError, AttributeError):
            pass
    for lower in (True, False):
        reference = BasicTokenizer(do_lower_case=lower) if BasicTokenizer else None
        for text in texts:
            fast = wordpiece.basic_tokenize(text, do_lower_case=lower)
            slow = wordpiece.basic_tokenize(text + " \u00e9", do_lower_case=lower)
            assert fast + ["e" if lower else "\u00e9"] == slow, repr(text)
            if reference is not None:
                assert fast == reference.tokenize(text), repr(text)


# Google's _is_chinese_char ranges.
_GOOGLE_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _google_is_cjk(char):
    return any(lo <= ord(char) <= hi for lo, hi in _GOOGLE_CJK)


def test_is_cjk_at_every_range_edge():
    for lo, hi in _GOOGLE_CJK:
        for cp in (lo - 1, lo, (lo + hi) // 2, hi, hi + 1):
            assert wordpiece.is_cjk(chr(cp)) == _google_is_cjk(chr(cp)), hex(cp)


def _google_basic_tokenize(text, do_lower_case=True, strip_accents=None):
    """Google's BasicTokenizer, one character at a time (its tokenization.py
    with the optional strip_accents of later versions): the reference."""
    if strip_accents is None:
        strip_accents = do_lower_case
    chars = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or (char not in "\t\n\r" and
                                       unicodedata.category(char) in ("Cc", "Cf")):
            continue
        if char in " \t\n\r" or unicodedata.category(char) == "Zs":
            chars.append(" ")
        elif _google_is_cjk(char):
            chars.extend((" ", char, " "))
        else:
            chars.append(char)
    tokens = []
    for token in "".join(chars).split():
        if do_lower_case:
            token = token.lower()
        if strip_accents:
            token = "".join(c for c in unicodedata.normalize("NFD", token)
                            if unicodedata.category(c) != "Mn")
        current = []
        for char in token:
            cp = ord(char)
            if (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
                    or unicodedata.category(char).startswith("P")):
                if current:
                    tokens.append("".join(current))
                    current = []
                tokens.append(char)
            else:
                current.append(char)
        if current:
            tokens.append("".join(current))
    return tokens


def test_unicode_translate_path_equals_the_character_rules():
    """Non-ASCII text goes through cached str.translate tables: the same
    tokens as Google's per-character loop on random strings drawn from
    accented Latin, Greek (final sigma), combining marks, CJK and its
    punctuation, full-width forms, Unicode spaces and line separators,
    format and control characters, Hangul, Arabic, emoji."""
    rng = np.random.default_rng(1)
    blocks = [(0x20, 0x7F), (0x80, 0x24F), (0x370, 0x3FF), (0x300, 0x36F),
              (0x4E00, 0x4E40), (0x3000, 0x303F), (0xFF00, 0xFF5E), (0x2000, 0x206F),
              (0xAC00, 0xAC20), (0x600, 0x660), (0x1F600, 0x1F610), (0xF900, 0xF910),
              (0x1E00, 0x1EFF), (0xFFF0, 0xFFFF)]
    pool = [chr(c) for lo, hi in blocks for c in range(lo, hi)] + ["Σ", "Σ", " ", " "] * 20
    texts = ["".join(rng.choice(pool, size=int(rng.integers(1, 30)))) for _ in range(1500)]
    texts += ["ΟΔΟΣ ΟΔΟΣ, ΣΑΣ.", "Héllo Wörld!", "a\u2028b\u00a0c\u200bd", "我是ab中国人。"]
    for options in ({}, {"do_lower_case": False}, {"strip_accents": False},
                    {"do_lower_case": False, "strip_accents": True}):
        for text in texts:
            assert wordpiece.basic_tokenize(text, **options) == \
                _google_basic_tokenize(text, **options), (repr(text), options)
