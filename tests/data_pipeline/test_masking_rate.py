"""`data.masked_lm_prob`: dynamic masking at a rate of the run's choosing. The
measured fraction of masked tokens over a few batches equals the configured
rate (0.15 and 0.3), each row's count is Google's rule; null keeps the
records' rate bit for bit; static records and rates beyond
`max_predictions_per_seq` are refused."""

import os

import numpy as np
import pytest

from data_pipeline import build, corpus
from data_pipeline import dynamic_masking
from data_pipeline import input as input_lib
from data_pipeline import vocab_layout
from tests.data_pipeline import reference

SEQ, PREDS = 64, 20  # 0.3 * (64 - 3) = 18.3 -> 18 predictions at most: P holds it


@pytest.fixture(scope="module")
def records(corpus_file, tokenizer_path, tmp_path_factory):
    """Dynamic-masking records built at Google's 0.15, one token per group
    (`whole_word_masking=False`: the budget is met exactly) and whole words."""
    docs = reference.read_documents(corpus_file)[:30]
    path = str(tmp_path_factory.mktemp("rate_corpus") / "small.txt")
    corpus.write_documents(docs, path)
    out = {}
    for name, whole_word in (("tokens", False), ("words", True)):
        root = str(tmp_path_factory.mktemp(f"rate_{name}"))
        build.build_mlm(path, tokenizer_path, root, masking="dynamic", max_seq_length=SEQ,
                        max_predictions_per_seq=PREDS, whole_word_masking=whole_word,
                        next_sentence=True, seed=3)
        out[name] = os.path.join(root, "train")
    return out


def _measure(data_dir, rate, batches=6):
    """(masked, eligible) per row over `batches` batches of the trainer's
    pipeline: eligible = the row's non-special tokens before masking (a
    masked token became [MASK] or a non-special id, or stayed)."""
    manifest = input_lib.read_manifest(data_dir)
    layout = vocab_layout.VocabLayout.from_manifest(manifest)
    masked, eligible = [], []
    for batch in input_lib.make_dataset(data_dir, 16, seed=5, masked_lm_prob=rate,
                                        shuffle_buffer=64).take(batches).as_numpy_iterator():
        ids, real = batch["input_ids"], batch["input_mask"].astype(bool)
        plain = real & ~layout.is_special[ids]
        eligible.append(plain.sum(1) + (real & (ids == layout.mask_id)).sum(1))
        masked.append(batch["masked_lm_weights"].sum(1).astype(int))
    return np.concatenate(masked), np.concatenate(eligible)


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_measured_fraction_is_the_configured_rate(records, rate):
    masked, eligible = _measure(records["tokens"], rate)
    # Each row: Google's rule, min(P, max(1, round(n * rate))), in float64.
    expected = np.minimum(PREDS, np.maximum(1, np.round(eligible * np.float64(rate))))
    np.testing.assert_array_equal(masked, expected)
    fraction = masked.sum() / eligible.sum()
    assert abs(fraction - rate) < 0.01, fraction


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_whole_word_records_mask_about_the_rate(records, rate):
    """Whole-word masking skips a word that would overshoot a row's budget
    (a later, shorter one may fill it): never over the budget, at most the rate."""
    masked, eligible = _measure(records["words"], rate)
    assert (masked <= np.maximum(1, np.round(eligible * rate))).all()
    assert rate - 0.03 < masked.sum() / eligible.sum() <= rate + 1e-9


def test_null_is_the_records_own_rate_bit_for_bit(records):
    data_dir = records["words"]
    assert input_lib.read_manifest(data_dir).masked_lm_prob == 0.15
    default = input_lib.make_dataset(data_dir, 8, seed=2).take(3)
    explicit = input_lib.make_dataset(data_dir, 8, seed=2, masked_lm_prob=0.15).take(3)
    other = input_lib.make_dataset(data_dir, 8, seed=2, masked_lm_prob=0.3).take(3)
    for a, b, c in zip(default.as_numpy_iterator(), explicit.as_numpy_iterator(),
                       other.as_numpy_iterator()):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        assert c["masked_lm_weights"].sum() > a["masked_lm_weights"].sum()


def test_a_rate_beyond_max_predictions_is_refused(records):
    # 0.35 * 61 = 21.35 -> 21 > P = 20.
    with pytest.raises(ValueError, match=r"masked_lm_prob=0.35 \(data.masked_lm_prob\) masks "
                       r"up to 21 of the 61 maskable tokens .*max_predictions_per_seq=20\).*"
                       r"--max_predictions_per_seq=21 or more, or lower "
                       r"data.masked_lm_prob to 0.328 or less"):
        input_lib.make_dataset(records["tokens"], 8, masked_lm_prob=0.35)


def test_static_records_are_refused(tokenizer_path, corpus_file, tmp_path):
    docs = reference.read_documents(corpus_file)[:10]
    path = str(tmp_path / "c.txt")
    corpus.write_documents(docs, path)
    build.build_mlm(path, tokenizer_path, str(tmp_path), max_seq_length=32,
                    max_predictions_per_seq=5)
    with pytest.raises(ValueError, match=r"needs dynamic-masking records, but the records in "
                       r".* have masking='static' \(masks drawn at 0.15 when built\)\. "
                       r"Rebuild them with `python -m data_pipeline.build --masking=dynamic`"):
        input_lib.make_dataset(str(tmp_path / "train"), 8, masked_lm_prob=0.2)
    # The default reads them as before.
    assert next(iter(input_lib.make_dataset(str(tmp_path / "train"), 8)))


@pytest.mark.parametrize("value", [0.0, 1.0, True, "0.2"])
def test_rate_out_of_range_is_refused(records, value):
    manifest = input_lib.read_manifest(records["tokens"])
    with pytest.raises(ValueError, match=r"must be a number in \(0, 1\)"):
        dynamic_masking.masking_rate(manifest, value)


def test_the_trainer_checks_the_rate_at_start_and_reads_it(records):
    """`data.masked_lm_prob` from the experiment (an --override, null too):
    the trainer's start-up check refuses what the records cannot hold, and
    the train pipeline it builds masks at that rate."""
    from pretraining.config import ExperimentConfig
    from pretraining.data_checks import check_data
    from pretraining.export_batches import global_batches

    manifest = input_lib.read_manifest(records["tokens"])
    base = {"model": {"vocab_size": manifest.vocab_size, "max_position_embeddings": SEQ},
            "data": {"train_dir": records["tokens"], "shuffle_buffer": 64},
            "train": {"global_batch_size": 16, "seed": 5}}
    experiment = ExperimentConfig.from_dict(base, overrides=["data.masked_lm_prob=0.3"])
    assert experiment.data.masked_lm_prob == 0.3
    check_data(experiment, records["tokens"], "train")
    batches = global_batches(experiment, 6)
    masked, _ = _measure(records["tokens"], 0.3)
    np.testing.assert_array_equal(batches["masked_lm_weights"].sum(-1).reshape(-1), masked)
    too_many = ExperimentConfig.from_dict(base, overrides=["data.masked_lm_prob=0.35"])
    with pytest.raises(ValueError, match="max_predictions_per_seq=20"):
        check_data(too_many, records["tokens"], "train")
    check_data(too_many, records["tokens"], "eval")  # eval records keep their own rate
    assert ExperimentConfig.from_dict(
        experiment.to_dict(), overrides=["data.masked_lm_prob=null"]).data.masked_lm_prob is None
    with pytest.raises(ValueError, match=r"`data.masked_lm_prob` must be a number in \(0, 1\)"):
        ExperimentConfig.from_dict(base, overrides=["data.masked_lm_prob=1.5"])
