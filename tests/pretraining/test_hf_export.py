"""The Hugging Face export used through `transformers` itself: `AutoTokenizer`
gives our tokenizers' ids (SentencePiece unigram and BPE, WordPiece cased and
uncased, after --keep_tokens/--add_tokens) on 1,000 lines of the built-in
sample, and `pipeline("fill-mask")` on a model trained here ranks the same
top-5 tokens as our model. Skipped without transformers (`make test-hf`)."""

import dataclasses
import json
import os
import sys
from collections import Counter

import numpy as np
import pytest

from data_pipeline import tokenization, wordpiece
from pretraining import convert
from pretraining.config import BertConfig
from pretraining.formats import vocab as vocab_lib
from pretraining.formats.bundle import Bundle, build_model
from tests.conftest import REPO_ROOT, tiny_experiment

pytestmark = pytest.mark.hf

# Text a user may type: spacing, tabs, newlines, NFKC forms, CJK, unknown
# characters, emoji, a literal "▁", accents, long words.
EDGE_LINES = ["  two  spaces ", "tab\there", "new\nline", "a\r\nb", "\u00a0nbsp and\u3000ideo",
              "日本語の文 é ﬁ Ⅳ ＡＢＣ１", "\u2581lead", "", " ", "trail\t",
              "Ωmega zero\u200bwidth", "emoji 😀 here", "Héllo WORLD, naïve café!",
              "don't (x) [y] {z} a.b", "x" * 150, "Supercalifragilistic" * 12, "a\x00b\x07c",
              "我是中国人。", "Ⅸ ½ ㎏ ｶﾀｶﾅ", "private\ue000use and\ufffd"]


def _transformers():
    pytest.importorskip("torch", reason="needs torch (make test-hf installs it)")
    return pytest.importorskip("transformers", reason="needs transformers (make test-hf)")


@pytest.fixture(scope="module")
def lines(mlm_data):
    """1,000 lines of the built-in sample corpus (Python's own docs), spread
    over the file."""
    with open(mlm_data["corpus"], encoding="utf-8") as f:
        text = [line.rstrip("\n") for line in f if line.strip()]
    return text[::len(text) // 1000][:1000]


@pytest.fixture(scope="module")
def spm_models(mlm_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    bpe = tokenization.train_sentencepiece([mlm_data["corpus"]], 400, str(root / "bpe"),
                                           model_type="bpe", seed=0)
    return {"unigram": mlm_data["tokenizer"], "bpe": bpe}


@pytest.fixture(scope="module")
def counts(mlm_data):
    """Words and characters of every third corpus line, cased and uncased."""
    out = {lower: (Counter(), Counter()) for lower in (True, False)}
    with open(mlm_data["corpus"], encoding="utf-8") as f:
        for line in list(f)[::3]:
            for lower, (words, chars) in out.items():
                tokens = wordpiece.basic_tokenize(line, lower)
                words.update(tokens)
                chars.update("".join(tokens))
    return out


def _wordpiece_vocab(counts, path, lower: bool) -> str:
    """A Google-layout vocab.txt ([PAD] 0, [unused*], [UNK] 100, [CLS] 101 ...)
    of the corpus's frequent words, characters and suffixes: words split into
    several pieces, and rare characters give [UNK]."""
    words, chars = counts[lower]
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]",
                                                                 "[MASK]"]
    alphabet = [c for c, _ in chars.most_common(60)]
    vocab += alphabet + ["##" + c for c in alphabet]
    vocab += ["##" + s for s in ("s", "ing", "ed", "ly", "tion", "er", "es", "al", "ment")]
    vocab += [w for w, _ in words.most_common(1200) if w not in vocab and len(w) > 1]
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return str(path)


def _bundle(vocab, seed=0) -> Bundle:
    config = BertConfig.from_json(f"{REPO_ROOT}/configs/models/bert_test.json")
    config = dataclasses.replace(config, vocab_size=len(vocab.tokens))
    rng = np.random.default_rng(seed)
    weights = {v.path: rng.normal(0, 0.1, v.shape).astype("float32")
               for v in build_model(config, True).weights}
    return Bundle(config, weights, vocab, "test")


def _check_ids(directory, ours, texts):
    """AutoTokenizer on `directory` gives [CLS] + our ids + [SEP], and token
    type 1 for the second text of a pair."""
    transformers = _transformers()
    theirs = transformers.AutoTokenizer.from_pretrained(str(directory))
    cls, sep = ours.layout.cls_id, ours.layout.sep_id
    assert (theirs.cls_token_id, theirs.sep_token_id, theirs.mask_token_id) == (
        cls, sep, ours.layout.mask_id)
    wrong = [(t, ours.encode(t), theirs(t)["input_ids"]) for t in texts
             if theirs(t)["input_ids"] != [cls] + ours.encode(t) + [sep]]
    assert not wrong, f"{len(wrong)} of {len(texts)} lines differ, e.g. {wrong[:2]}"
    pair = theirs(texts[0], texts[1])
    first = len(ours.encode(texts[0])) + 2
    assert pair["input_ids"] == [cls] + ours.encode(texts[0]) + [sep] + ours.encode(
        texts[1]) + [sep]
    assert pair["token_type_ids"] == [0] * first + [1] * (len(pair["input_ids"]) - first)
    return theirs


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_sentencepiece_export_gives_our_ids(kind, spm_models, lines, tmp_path):
    vocab = vocab_lib.read(spm_models[kind])
    convert.save(_bundle(vocab), str(tmp_path / "hf"), "hf")
    assert sorted(os.listdir(tmp_path / "hf")) == [
        "config.json", "model.safetensors", "special_tokens_map.json", "spiece.model",
        "tokenizer.json", "tokenizer_config.json"]
    ours = tokenization.SentencePieceTokenizer(spm_models[kind])
    theirs = _check_ids(tmp_path / "hf", ours, lines + EDGE_LINES)
    assert len(theirs) == ours.vocab_size
    assert theirs.decode(theirs(lines[3])["input_ids"], skip_special_tokens=True) == \
        ours.decode(ours.encode(lines[3]))


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_wordpiece_export_gives_our_ids(lower, counts, lines, tmp_path):
    path = _wordpiece_vocab(counts, tmp_path / "vocab.txt", lower)
    vocab = vocab_lib.read(path)
    assert vocab.do_lower_case == lower
    convert.save(_bundle(vocab), str(tmp_path / "hf"), "hf")
    ours = wordpiece.WordPieceTokenizer(path, do_lower_case=lower)
    unknown = sum(t.count(ours.unk_id) for t in map(ours.encode, lines))
    assert unknown > 10 and sum(1 for t in lines if len(ours.tokenize(t)) > len(t.split())) > 100
    _check_ids(tmp_path / "hf", ours, lines + EDGE_LINES)


def test_surgery_exports_give_our_ids(spm_models, counts, lines, tmp_path):
    """--keep_tokens (reordered, some dropped) and --add_tokens: the written
    spiece.model / vocab.txt and tokenizer.json agree on every line."""
    keep = list(range(5)) + list(range(399, 5, -1))[::2] + [6]  # every other piece, reversed
    (tmp_path / "keep.txt").write_text("\n".join(map(str, keep)) + "\n")
    (tmp_path / "add.txt").write_text("<py>\nzzyzxword\n")
    texts = lines[:300] + ["a <py> b<py>c <py>", "zzyzxword <py>", "Zzyzxwords"] + EDGE_LINES
    vocab = vocab_lib.read(spm_models["unigram"])
    convert.save(_bundle(vocab), str(tmp_path / "in"), "hf")
    convert.convert(str(tmp_path / "in"), "hf", str(tmp_path / "out"), "hf",
                    keep_tokens=str(tmp_path / "keep.txt"), add_tokens=str(tmp_path / "add.txt"))
    ours = tokenization.SentencePieceTokenizer(str(tmp_path / "out" / "spiece.model"))
    assert ours.vocab_size == len(keep) + 2
    (tmp_path / "no_unk.txt").write_text("0\n2\n3\n4\n5\n")
    with pytest.raises(ValueError, match=r"must keep the unknown piece '\[UNK\]' \(id 1\)"):
        convert.convert(str(tmp_path / "in"), "hf", str(tmp_path / "no_unk"), "hf",
                        keep_tokens=str(tmp_path / "no_unk.txt"))
    assert not (tmp_path / "no_unk").exists()
    pieces = [ours.id_to_piece(i) for i in ours.encode("a <py> b")]
    assert pieces.count("<py>") == 1 and ours.encode("<py>")[-1] == len(keep), pieces
    _check_ids(tmp_path / "out", ours, texts)

    path = _wordpiece_vocab(counts, tmp_path / "vocab.txt", True)
    convert.save(_bundle(vocab_lib.read(path)), str(tmp_path / "wp"), "hf")
    size = len(vocab_lib.read(path).tokens)
    (tmp_path / "keep_wp.txt").write_text("\n".join(map(str, range(size - 1, -1, -1))) + "\n")
    convert.convert(str(tmp_path / "wp"), "hf", str(tmp_path / "wp_out"), "hf",
                    keep_tokens=str(tmp_path / "keep_wp.txt"), add_tokens=str(tmp_path / "add.txt"))
    ours = wordpiece.WordPieceTokenizer(str(tmp_path / "wp_out" / "vocab.txt"))
    assert ours.encode("zzyzxword")[0] == size + 1
    _check_ids(tmp_path / "wp_out", ours, texts)


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_tokenizer_json_is_written_without_tokenizers_as_tokenizers_writes_it(
        spm_models, counts, tmp_path, monkeypatch):
    """The export does not need the `tokenizers` package, and `tokenizers`
    reads each file and serialises it back to the same JSON (unigram, BPE with
    an added user-defined piece, WordPiece; piece scores to 1e-12)."""
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    (tmp_path / "add.txt").write_text("<py>\n")
    convert.save(_bundle(vocab_lib.read(spm_models["unigram"])), str(tmp_path / "unigram"), "hf")
    convert.save(_bundle(vocab_lib.read(spm_models["bpe"])), str(tmp_path / "bpe_in"), "hf")
    convert.convert(str(tmp_path / "bpe_in"), "hf", str(tmp_path / "bpe"), "hf",
                    add_tokens=str(tmp_path / "add.txt"))
    path = _wordpiece_vocab(counts, tmp_path / "vocab.txt", True)
    convert.save(_bundle(vocab_lib.read(path)), str(tmp_path / "wordpiece"), "hf")
    monkeypatch.undo()  # tokenizers importable again
    tokenizers = pytest.importorskip("tokenizers")
    for name in ("unigram", "bpe", "wordpiece"):
        written = json.loads((tmp_path / name / "tokenizer.json").read_text(encoding="utf-8"))
        again = json.loads(tokenizers.Tokenizer.from_file(
            str(tmp_path / name / "tokenizer.json")).to_str())
        # serde_json parses a float to within one ulp: scores compared to 1e-12.
        assert _rounded(again) == _rounded(written), name
    assert written["model"]["type"] == "WordPiece"
    assert json.loads((tmp_path / "bpe" / "tokenizer.json").read_text())["model"][
        "ignore_merges"] is True


def _masked_texts(ours, lines, count=20):
    """`count` lines with one single-piece word replaced by [MASK]: the text
    and our ids of it (the word's id replaced by the mask id)."""
    out = []
    for number, line in enumerate(lines):
        words = line.split()
        pieces = [ours.encode(w) for w in words]
        if not 6 <= sum(map(len, pieces)) <= 60 or sum(pieces, []) != ours.encode(line):
            continue
        single = [k for k, p in enumerate(pieces) if len(p) == 1 and len(words[k]) > 2]
        if not single:
            continue
        k = single[number % len(single)]
        ids = sum(pieces[:k], []) + [ours.layout.mask_id] + sum(pieces[k + 1:], [])
        out.append((" ".join(words[:k] + ["[MASK]"] + words[k + 1:]), ids, pieces[k][0]))
        if len(out) == count:
            return out
    raise AssertionError(f"only {len(out)} lines to mask")


@pytest.mark.slow
def test_fill_mask_pipeline_matches_our_model(mlm_data, lines, tmp_path):
    """A model trained here on the sample (40 steps), exported: transformers'
    fill-mask pipeline ranks the same top-5 tokens, with the same
    probabilities (to 1e-5), as our model on our ids, for 20 sentences."""
    transformers = _transformers()
    from pretraining.trainer import Trainer  # pylint: disable=import-outside-toplevel
    experiment = tiny_experiment(mlm_data, steps=40, steps_per_loop=20, checkpoint_every=40)
    Trainer(experiment, str(tmp_path / "run")).train()
    assert convert.convert(str(tmp_path / "run"), "native", str(tmp_path / "hf"), "hf").head
    model = convert.to_keras(convert.load(str(tmp_path / "run"), "native"))
    ours = tokenization.SentencePieceTokenizer(mlm_data["tokenizer"])
    cases = _masked_texts(ours, lines)
    fill = transformers.pipeline("fill-mask", model=str(tmp_path / "hf"), top_k=5)

    rows = np.zeros((len(cases), model.encoder.config.max_position_embeddings), "int32")
    for row, (text, ids, _) in zip(rows, cases):
        ids = [ours.layout.cls_id] + ids + [ours.layout.sep_id]
        assert fill.tokenizer(text)["input_ids"] == ids, text
        row[:len(ids)] = ids
    positions = np.argmax(rows == ours.layout.mask_id, axis=1)[:, None].astype("int32")
    logits = model({"input_ids": rows, "input_mask": (rows > 0).astype("int32"),
                    "segment_ids": np.zeros_like(rows), "masked_lm_positions": positions})
    logits = np.asarray(logits["masked_lm_logits"], "float64")[:, 0]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    words = 0
    for (text, _, _), predicted, p in zip(cases, fill([c[0] for c in cases]), probs):
        top = np.argsort(-p, kind="stable")[:5]
        ids = [x["token"] for x in predicted]
        if ids != top.tolist():  # only a tie may order two tokens differently
            np.testing.assert_allclose(p[ids], p[top], atol=1e-6, err_msg=f"{text}: {ids}")
        np.testing.assert_allclose([x["score"] for x in predicted], p[top], atol=1e-5)
        strings = [x["token_str"] for x in predicted]
        assert strings == [ours.decode([i]) for i in top.tolist()]
        words += sum(bool(s.strip()) for s in strings)  # "" is the bare `▁` piece
    assert words >= 60, f"only {words} of the 100 predictions are words"
