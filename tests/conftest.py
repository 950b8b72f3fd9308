"""Shared test setup.

Two logical CPU devices are configured here, before any TensorFlow op runs,
so MirroredStrategy tests can run on a machine without GPUs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The CLIs' CPU defaults, here too (`import pretraining` sets them before
# TensorFlow loads): in-process and subprocess runs compare equal.
import pretraining  # noqa: E402,F401

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def mirrored():
    """One 2-replica MirroredStrategy for the whole session: several strategies
    using collective ops in one process interfere with each other."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def mlm_data(tmp_path_factory):
    """Small real masked-LM records: 400 documents of the built-in sample, a
    400-piece SentencePiece model, sequences of 32 with 5 predictions."""
    from data_pipeline import build, corpus, sample_corpus, tokenization

    root = tmp_path_factory.mktemp("mlm_data")
    documents = []
    for document in sample_corpus.sample_documents():
        documents.append(document)
        if len(documents) == 400:
            break
    corpus_path = str(root / "corpus.txt")
    corpus.write_documents(documents, corpus_path)
    prefix = str(root / "spm")
    tokenization.train_sentencepiece([corpus_path], 400, prefix, seed=0)
    build.build_mlm([corpus_path], prefix + ".model", str(root), max_seq_length=32,
                    max_predictions_per_seq=5, seed=1, num_shards=2, eval_fraction=0.1)
    return {"train_dir": str(root / "train"), "eval_dir": str(root / "eval"),
            "vocab_size": 400, "tokenizer": prefix + ".model", "corpus": corpus_path}


def tiny_experiment(mlm_data, **train):
    """An `ExperimentConfig` of `bert_test` (vocab resized) on `mlm_data`."""
    from pretraining.config import ExperimentConfig

    train_section = {"steps": 20, "global_batch_size": 8, "seed": 3, "steps_per_loop": 5,
                     "checkpoint_every": 10, "keep_checkpoints": 5}
    train_section.update(train)
    return ExperimentConfig.from_dict({
        "model": "bert_test",  # shipped: pretraining/configs/models/bert_test.json
        "data": {"train_dir": mlm_data["train_dir"], "eval_dir": mlm_data["eval_dir"],
                 "shuffle_buffer": 100},
        "optimizer": {"learning_rate": 0.005, "warmup_steps": 5},
        "train": train_section,
    }, overrides=[f"model.vocab_size={mlm_data['vocab_size']}",
                  "model.hidden_dropout_prob=0.1"])


@pytest.fixture(scope="session")
def task_data(mlm_data, tmp_path_factory):
    """`lm` and `seq2seq` records (sequences of 32) from the `mlm_data` corpus."""
    from data_pipeline import builder, tasks

    root = tmp_path_factory.mktemp("task_data")
    out = {}
    for task in ("lm", "seq2seq"):
        builder.build([mlm_data["corpus"]], mlm_data["tokenizer"], str(root / task),
                      task=tasks.TaskConfig(task=task, max_seq_length=32), seed=1,
                      num_shards=2, eval_fraction=0.1)
        out[task] = {"train_dir": str(root / task / "train"),
                     "eval_dir": str(root / task / "eval"),
                     "vocab_size": mlm_data["vocab_size"]}
    return out
