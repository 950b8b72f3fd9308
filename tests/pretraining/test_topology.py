"""The same run on any topology, dropout on: one device, 2 mirrored replicas,
gradient accumulation, and runs resumed across a change of replica count.

Dropout masks are keyed on (train.seed, global batch, layer, global example
index, position), not on a replica's generator, so every topology trains
the same trajectory up to the order of float sums. One set of runs (module
fixture) serves every comparison: masked LM with NSP, dropout 0.1 on the
hidden states and the attention probabilities, 20 steps.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf

from pretraining import dropout, topology
from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment

STEPS = 20


def _experiment(data, task="mlm", **train):
    settings = dict(steps=STEPS, global_batch_size=8, steps_per_loop=5, checkpoint_every=10)
    settings.update(train)
    experiment = tiny_experiment(data, **settings)
    experiment.task = task
    experiment.model.attention_mask_type = {"mlm": "bidirectional", "seq2seq": "unilm"}[task]
    experiment.model.hidden_dropout_prob = 0.1
    experiment.model.attention_probs_dropout_prob = 0.1
    experiment.data.eval_dir = ""  # evaluation does not use dropout
    return experiment


def _train(experiment, model_dir, strategy=None, stop_at=None):
    trainer = Trainer(experiment, str(model_dir), strategy)
    try:
        summary = trainer.train(stop_at=stop_at)
        weights = {v.path: v.numpy() for v in trainer.state.model.weights}
        return summary, weights, trainer.log.records()
    finally:
        trainer.close()


def _max_relative(w_one, w_two):
    """Largest norm of the difference / norm over the variables, but the
    attention key biases: their gradient is zero in exact arithmetic (a
    shift shared by all keys leaves the softmax unchanged), so they hold
    rounding noise only (~1e-9), checked here to 1e-8 absolute."""
    assert w_one.keys() == w_two.keys() and w_one
    relative = []
    for path, value in w_one.items():
        if path.endswith("attention/key/bias"):
            assert np.abs(w_two[path] - value).max() < 1e-8, path
        else:
            scale = max(np.linalg.norm(value), 1e-12)
            relative.append(np.linalg.norm(w_two[path] - value) / scale)
    return max(relative)


@pytest.fixture(scope="module")
def nsp_data(mlm_data, tmp_path_factory):
    """Masked-LM records with NSP pairs, from the `mlm_data` corpus."""
    from data_pipeline import build

    root = tmp_path_factory.mktemp("nsp_data")
    build.build_mlm([mlm_data["corpus"]], mlm_data["tokenizer"], str(root), max_seq_length=32,
                    max_predictions_per_seq=5, seed=1, num_shards=2, eval_fraction=0.1,
                    next_sentence=True)
    return dict(mlm_data, train_dir=str(root / "train"), eval_dir=str(root / "eval"))


@pytest.fixture(scope="module")
def runs(nsp_data, mirrored, tmp_path_factory):
    """{name: (summary, weights, train records)}: uninterrupted on one device,
    on 2 mirrored replicas, with 2 accumulation steps; stopped at step 10 on
    2 replicas and resumed on 1, and the reverse (resumed with accumulation 2
    too), each against the uninterrupted one-device run."""
    root = tmp_path_factory.mktemp("topology_runs")
    experiment = _experiment(nsp_data)
    accumulated = _experiment(nsp_data, gradient_accumulation_steps=2)
    out = {"default": _train(experiment, root / "default"),
           "mirrored": _train(experiment, root / "mirrored", mirrored),
           "accumulation": _train(accumulated, root / "accumulation")}
    _train(experiment, root / "two_then_one", mirrored, stop_at=10)
    out["two_then_one"] = _train(experiment, root / "two_then_one")
    _train(experiment, root / "one_then_two", stop_at=10)
    # another accumulation split with the same global batch needs no --allow_changes
    out["one_then_two"] = _train(accumulated, root / "one_then_two", mirrored)
    out["dir"] = root
    return out


def test_dropout_is_on_and_keyed_on_the_example(nsp_data):
    """The runs below train with dropout: the keyed masks change the
    outputs; a row's output depends on its global example index, not on the
    rows beside it or where it sits in the batch."""
    from pretraining.model import BertEncoder

    config = _experiment(nsp_data).model
    encoder = BertEncoder(config)
    ids = np.random.default_rng(0).integers(5, 300, (4, 32)).astype("int32")
    inputs = {"input_ids": ids, "segment_ids": 0 * ids, "input_mask": 1 + 0 * ids,
              "dropout_seed": dropout.step_seed(3, 7)}
    whole = encoder(dict(inputs, example_index=tf.range(4)), training=True)["sequence_output"]
    plain = encoder(inputs, training=False)["sequence_output"]
    assert np.abs(np.asarray(whole) - np.asarray(plain)).max() > 0.1
    # Rows 2, 3 alone (a replica's share), and in reverse order.
    half = {k: v[2:] for k, v in inputs.items() if k != "dropout_seed"}
    half = dict(half, dropout_seed=inputs["dropout_seed"], example_index=tf.range(2, 4))
    alone = encoder(half, training=True)["sequence_output"]
    np.testing.assert_allclose(alone, np.asarray(whole)[2:], atol=1e-6)
    flipped = {k: v[::-1] for k, v in half.items() if k != "dropout_seed"}
    flipped = dict(flipped, dropout_seed=inputs["dropout_seed"])
    np.testing.assert_allclose(encoder(flipped, training=True)["sequence_output"][::-1],
                               np.asarray(whole)[2:], atol=1e-6)
    # Another global index, or another step: other masks.
    moved = encoder(dict(half, example_index=tf.range(6, 8)), training=True)["sequence_output"]
    assert np.abs(np.asarray(moved) - np.asarray(alone)).max() > 0.1
    later = encoder(dict(half, dropout_seed=dropout.step_seed(3, 8)),
                    training=True)["sequence_output"]
    assert np.abs(np.asarray(later) - np.asarray(alone)).max() > 0.1


@pytest.mark.parametrize("other", ["mirrored", "accumulation"])
def test_topologies_train_the_same_run(runs, other):
    one, w_one, rec_one = runs["default"]
    two, w_two, rec_two = runs[other]
    assert [r["step"] for r in rec_one] == [r["step"] for r in rec_two] == [1, 5, 10, 15, 20]
    for a, b in zip(rec_one, rec_two):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
        np.testing.assert_allclose(b["nsp_loss"], a["nsp_loss"], rtol=1e-5)
        np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-4)
        assert b["learning_rate"] == a["learning_rate"]  # the schedule counts updates
    assert _max_relative(w_one, w_two) < 1e-5


@pytest.mark.parametrize("resumed", ["two_then_one", "one_then_two"])
def test_resume_across_replica_counts_continues_the_run(runs, resumed):
    """Stopped at step 10 on 2 replicas, resumed on 1 (and the reverse, also
    from 1 to 2 accumulation steps): the uninterrupted run's weights."""
    _, expected, _ = runs["default"]
    summary, got, _ = runs[resumed]
    assert summary["step"] == STEPS
    assert _max_relative(expected, got) < 1e-6


def test_resume_logs_the_topology_change(runs, nsp_data, mirrored, caplog, tmp_path):
    """The resumed runs recorded their launch; a further resume on another
    replica count says what changed."""
    import json

    recorded = json.loads((runs["dir"] / "one_then_two" / topology.TOPOLOGY_FILE).read_text())
    assert recorded == {"replicas": 2, "hosts": 1, "gradient_accumulation_steps": 2, "step": 10}
    train = _experiment(nsp_data).train
    with caplog.at_level(logging.WARNING):
        previous = topology.log_resume(str(runs["dir"] / "one_then_two"),
                                       tf.distribute.get_strategy(), train, 20, write=False)
    assert previous == {"replicas": 2, "hosts": 1, "gradient_accumulation_steps": 2}
    assert ("Resuming at step 20 across a topology change: the run had 2 replica(s) on 1 "
            "host(s), 2 accumulation step(s), it now has 1 replica(s) on 1 host(s), 1 "
            "accumulation step(s)") in caplog.text
    assert topology.log_resume(str(tmp_path), mirrored, train, None) is None  # a new run

