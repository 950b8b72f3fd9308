import numpy as np
import pytest
import sentencepiece as spm

from data_pipeline import features
from data_pipeline import tokenization

SMALL_VOCAB = 500  # As in conftest.py.


def test_special_ids(tokenizer):
    assert tokenizer.vocab_size == SMALL_VOCAB
    assert [tokenizer.id_to_piece(i) for i in range(5)] == list(
        features.SPECIAL_TOKENS)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id,
            tokenizer.sep_id, tokenizer.mask_id) == (0, 1, 2, 3, 4)
    ids = tokenizer.encode("The [MASK] is here.")
    assert features.MASK_ID in ids
    assert ids.count(features.MASK_ID) == 1


def test_encode_batch_matches_encode(tokenizer):
    texts = ["Return a new list.", "Hello world, unbelievable!", ""]
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]
    ids = tokenizer.encode(texts[0])
    assert tokenizer.decode(ids) == texts[0]


def test_word_starts(tokenizer):
    ids = tokenizer.encode("Hello wonderful [MASK] world.")
    starts = tokenizer.word_starts(ids)
    pieces = [tokenizer.id_to_piece(i) for i in ids]
    expected = [int(p.startswith("\u2581") or p == "[MASK]") for p in pieces]
    assert starts == expected
    assert starts[0] == 1
    assert tokenizer.word_starts([0, 1, 2, 3, 4]) == [1, 1, 1, 1, 1]


def test_training_deterministic(corpus_file, tokenizer, tmp_path):
    path = tokenization.train_sentencepiece(
        [corpus_file], SMALL_VOCAB, str(tmp_path / "spm"), seed=0)
    again = tokenization.SentencePieceTokenizer(path)
    assert again.sha256 == tokenizer.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spm.model",
                                                          "spm.vocab"]


def test_vocab_too_large(corpus_file, tmp_path):
    with pytest.raises(ValueError, match="--vocab_size=200000") as e:
        tokenization.train_sentencepiece([corpus_file], 200_000,
                                         str(tmp_path / "big"))
    assert "smaller" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_invalid_models(corpus_file, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        tokenization.SentencePieceTokenizer(str(tmp_path / "none.model"))
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model"):
        tokenization.SentencePieceTokenizer(str(bad))
    # A model with SentencePiece's default special ids is rejected.
    spm.SentencePieceTrainer.train(input=corpus_file, vocab_size=300,
                                   model_prefix=str(tmp_path / "plain"),
                                   minloglevel=2)
    with pytest.raises(ValueError, match=r"plain\.model.*\[PAD\]"):
        tokenization.SentencePieceTokenizer(str(tmp_path / "plain.model"))


def test_word_start_table_vectorised(tokenizer):
    ids = np.arange(tokenizer.vocab_size)
    table = tokenizer.is_word_start
    assert table.dtype == bool and table.shape == (tokenizer.vocab_size,)
    assert tokenizer.word_starts(ids) == table.astype(int).tolist()
