"""Shared fixtures for data_pipeline tests: a small corpus and tokenizer."""

import itertools
import os
import sys

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from data_pipeline import corpus  # pylint: disable=wrong-import-position
from data_pipeline import sample_corpus  # pylint: disable=wrong-import-position
from data_pipeline import tokenization  # pylint: disable=wrong-import-position

SMALL_VOCAB = 500


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """First 400 documents of the sample corpus, in the corpus format."""
    path = str(tmp_path_factory.mktemp("corpus") / "small.txt")
    docs = list(itertools.islice(sample_corpus.sample_documents(), 400))
    corpus.write_documents(docs, path)
    return path


@pytest.fixture(scope="session")
def tokenizer_path(corpus_file, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("spm") / "spm")
    return tokenization.train_sentencepiece([corpus_file], SMALL_VOCAB, prefix,
                                            seed=0)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path):
    return tokenization.SentencePieceTokenizer(tokenizer_path)
