"""The model on Keras's JAX and PyTorch backends: saved as `.keras` under
TensorFlow (this process), loaded and run under the other backend in a
subprocess (`backend_check.py`, one per backend for all cases), compared
here with what TensorFlow computed.

Cases: every attention mask (bidirectional, causal, unilm, prefix), every
task head (masked LM with NSP, lm, seq2seq), Conditional LayerNorm with and
without its hidden Dense, and a bare encoder; for the causal and UniLM
models, `generation.Generator`'s greedy, beam and sampled tokens. Per case: the outputs with
dropout off (<= 1e-5), the loss, and the gradient of every trainable
variable (TensorFlow's GradientTape vs `jax.value_and_grad` over
`model.stateless_call`, or torch autograd; <= 1e-5 of the variable's
largest gradient). Dropout: `hashed_dropout` draws the same mask on every
backend for the same seed words (exactly).

Marked `ports`: `make test-ports` and CI run them; skipped, saying why,
when jax or torch is not installed.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pretraining.config import BertConfig
from pretraining.dropout import hashed_dropout
from pretraining.generation import Generator
from pretraining.pretrainer import BertPretrainer
from pretraining.model import BertEncoder
from tests.ports.backend_check import GENERATION, case_loss

pytestmark = pytest.mark.ports

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_check.py")
BATCH, SEQ, PREDICTIONS, VOCAB, CONDITION = 3, 12, 3, 64, 3
TOLERANCE = 1e-5

# name, kind, task, next_sentence, model fields. Every mask, every head, both
# Conditional LayerNorm variants; five cases keep the JAX run near 45 s.
# Generation (greedy, beam, sampling) runs on the causal and UniLM cases.
CASES = [
    ("mlm_nsp_cln_hidden", "pretrainer", "mlm", True,
     {"condition_size": CONDITION, "condition_hidden_size": 8, "condition_hidden_act": "tanh"}),
    ("lm_causal", "pretrainer", "lm", False, {"attention_mask_type": "causal"}),
    ("seq2seq_unilm", "pretrainer", "seq2seq", False, {"attention_mask_type": "unilm"}),
    ("lm_prefix_cln", "pretrainer", "lm", False,
     {"attention_mask_type": "prefix", "prefix_length": 4, "condition_size": CONDITION}),
    ("encoder", "encoder", None, False, {}),
]


def _config(fields):
    # initializer_range 0.2 (not 0.02): activations and logits of order 1, so
    # an absolute tolerance of 1e-5 is also a relative one.
    return BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=SEQ,
                      initializer_range=0.2, **fields)


def _batch(rng, task, condition):
    lengths = np.array([SEQ, 9, 6])
    valid = np.arange(SEQ)[None, :] < lengths[:, None]
    input_ids = np.where(valid, rng.integers(5, VOCAB, (BATCH, SEQ)), 0)
    source = lengths // 2 if task == "seq2seq" else lengths // 3
    segment_ids = np.where(valid & (np.arange(SEQ)[None, :] >= source[:, None]), 1, 0)
    positions = np.stack([np.sort(rng.choice(n, PREDICTIONS, replace=False)) for n in lengths])
    batch = {
        "input_ids": input_ids.astype("int32"),
        "input_mask": valid.astype("int32"),
        "segment_ids": segment_ids.astype("int32"),
        "masked_lm_positions": positions.astype("int32"),
        "masked_lm_ids": rng.integers(5, VOCAB, (BATCH, PREDICTIONS)).astype("int32"),
        "masked_lm_weights": np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], "float32"),
        "next_sentence_labels": np.array([[0], [1], [1]], "int32"),
    }
    if condition:
        batch["condition"] = rng.normal(size=(BATCH, condition)).astype("float32")
    return batch


def _save_case(root, rng, name, kind, task, next_sentence, fields):
    config = _config(fields)
    keras_seed = int(rng.integers(1 << 30))
    tf.keras.utils.set_random_seed(keras_seed)
    encoder = BertEncoder(config)
    model = encoder if kind == "encoder" else BertPretrainer(encoder, task, next_sentence)
    # Conditional LayerNorm starts at zero (the condition has no effect):
    # random weights, so the condition's path is compared too.
    for v in model.weights:
        if "gamma_dense" in v.path or "beta_dense" in v.path:
            v.assign(rng.normal(0.0, 0.2, v.shape).astype("float32"))
    model.save(str(root / f"{name}.keras"))
    batch = _batch(rng, task, config.condition_size)
    # Every decoding method on the causal model, greedy on UniLM (the same
    # loop; its mask and target segment differ): ~10 s less under JAX.
    generate = {"causal": list(GENERATION), "unilm": ["greedy"]}.get(
        config.attention_mask_type, [])
    if generate:  # contexts of 5, 3 and 4 tokens (the source, for seq2seq)
        context = np.arange(SEQ)[None] < np.array([[5], [3], [4]])
        batch["gen_ids"] = np.where(context, batch["input_ids"], 0).astype("int32")
        batch["gen_mask"] = context.astype("int32")
        batch["gen_segments"] = np.zeros_like(batch["gen_ids"])
    if kind == "encoder":  # the directions `case_loss` projects the outputs on
        batch["probe_sequence"] = rng.normal(size=(BATCH, SEQ, 16)).astype("float32")
        batch["probe_pooled"] = rng.normal(size=(BATCH, 16)).astype("float32")
    np.savez(root / f"{name}_batch.npz", **batch)
    case = {"name": name, "kind": kind, "task": task, "next_sentence": next_sentence,
            "dropout": kind == "encoder",  # JAX's dropout-on check: the smallest graph
            "generate": generate}
    inputs = {k: tf.constant(v) for k, v in batch.items()}
    reference = {f"out/{k}": v.numpy() for k, v in model(inputs, training=False).items()}
    if kind == "pretrainer":
        reference.update({f"encoder/{k}": v.numpy()
                          for k, v in encoder(inputs, training=False).items()})
    with tf.GradientTape() as tape:
        loss = case_loss(case, inputs, model(inputs, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    reference["loss"] = loss.numpy()
    if generate:
        generator = Generator(model, SEQ, sep_id=3)
        context = [batch[k] for k in ("gen_ids", "gen_mask", "gen_segments")]
        for method in generate:
            reference[f"generate/{method}"] = generator.generate(*context, GENERATION[method])
    for v, g in zip(model.trainable_variables, grads):
        # None: the variable does not reach the loss (the pooler in `lm`).
        reference[f"grad/{v.path}"] = (np.zeros(v.shape, "float32") if g is None
                                        else tf.convert_to_tensor(g).numpy())  # IndexedSlices too
    return case, reference


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The cases saved under TensorFlow, and TensorFlow's results for them."""
    root = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(17)
    cases, references = [], {}
    for spec in CASES:
        case, references[spec[0]] = _save_case(root, rng, *spec)
        cases.append(case)
    (root / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    # hashed_dropout: shapes, rates and seed words (negative ones included).
    dropout = {"rates": np.array([0.1, 0.5, 0.9], "float32")}
    for i, shape in enumerate([(4, 8, 16), (2, 6), (3, 4, 4, 4)]):
        dropout[f"x{i}"] = rng.normal(size=shape).astype("float32")
        dropout[f"seed{i}"] = rng.integers(-2 ** 31, 2 ** 31 - 1, 2).astype("int32")
    np.savez(root / "dropout.npz", **dropout)
    references["dropout"] = [
        hashed_dropout(tf.constant(dropout[f"x{i}"]), float(rate),
                       tf.constant(dropout[f"seed{i}"])).numpy()
        for i, rate in enumerate(dropout["rates"])]
    return root, references


@pytest.fixture(scope="module", params=["jax", "torch"])
def backend(request):
    """What `backend_check.py` computed under KERAS_BACKEND=param."""
    name = request.param
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed in this environment: "
                    f"`pip install {'jax[cpu]' if name == 'jax' else 'torch'}` (a CPU build "
                    "suffices) to run this test")
    root, _ = request.getfixturevalue("saved")  # only when there is a backend to compare
    out = root / f"{name}.npz"
    env = dict(os.environ, KERAS_BACKEND=name, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, CHECK, str(root), str(out)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"backend_check.py under {name}:\n{result.stderr[-5000:]}"
    with np.load(out) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("meta")))
    assert meta["backend"] == name
    return name, arrays


def _worst(pairs):
    """(largest |a - b|, its key) over (key, a, b)."""
    return max((float(np.max(np.abs(a - b))), key) for key, a, b in pairs)


def test_outputs_match_tensorflow(backend, saved):
    _, references = saved
    name, arrays = backend
    for case, *_ in CASES:
        keys = [k for k in references[case] if k.startswith(("out/", "encoder/"))]
        assert keys
        for key in keys:
            assert arrays[f"{case}/{key}"].shape == references[case][key].shape, (case, key)
        diff, key = _worst((k, arrays[f"{case}/{k}"], references[case][k]) for k in keys)
        assert diff <= TOLERANCE, f"{name} {case} {key}: max |diff| {diff:.2e}"
        np.testing.assert_allclose(arrays[f"{case}/loss"], references[case]["loss"],
                                   rtol=TOLERANCE, err_msg=f"{name} {case} loss")


def test_gradients_match_tensorflow(backend, saved):
    _, references = saved
    name, arrays = backend
    for case, *_ in CASES:
        keys = [k for k in references[case] if k.startswith("grad/")]
        # Loaded under the other backend, the model has the same variable paths.
        assert sorted(k for k in arrays if k.startswith(f"{case}/grad/")) == sorted(
            f"{case}/{k}" for k in keys)
        largest = max(float(np.max(np.abs(references[case][k]))) for k in keys)
        reached = 0
        for key in keys:
            ours, theirs = references[case][key], arrays[f"{case}/{key}"]
            diff = float(np.max(np.abs(ours - theirs)))
            if key.endswith("/attention/key/bias"):
                # Exactly 0 (softmax ignores a shift shared by all keys): both
                # sides are rounding noise.
                assert max(diff, float(np.max(np.abs(theirs)))) <= 1e-6 * largest, (name, key)
                continue
            scale = float(np.max(np.abs(ours)))
            reached += scale > 0
            assert diff <= TOLERANCE * scale, (
                f"{name} {case} {key}: max |diff| {diff:.2e}, largest gradient {scale:.2e}")
        key_biases = sum(k.endswith("/attention/key/bias") for k in keys)
        # Only the pooler may not reach the loss (lm, seq2seq).
        assert reached >= len(keys) - key_biases - 2


def test_generation_matches_tensorflow(backend, saved):
    _, references = saved
    name, arrays = backend
    compared = 0
    for case, *_ in CASES:
        for method in GENERATION:
            if f"generate/{method}" not in references[case]:
                continue
            compared += 1
            ours = references[case][f"generate/{method}"]
            assert ours.shape == (BATCH, GENERATION[method].max_new_tokens)
            np.testing.assert_array_equal(arrays[f"{case}/generate/{method}"], ours,
                                          err_msg=f"{name} {case} {method}")
    assert compared == len(GENERATION) + 1


def test_dropout_masks_match_tensorflow(backend, saved):
    _, references = saved
    name, arrays = backend
    for i, ours in enumerate(references["dropout"]):
        theirs = arrays[f"dropout/{i}"]
        np.testing.assert_array_equal(theirs == 0, ours == 0, err_msg=f"{name} mask {i}")
        np.testing.assert_allclose(theirs, ours, rtol=1e-6, err_msg=f"{name} dropout {i}")
        kept = float(np.mean(ours != 0))
        assert 0.02 < kept < 0.98  # a mask, neither all kept nor all dropped
    if name == "jax":
        np.testing.assert_array_equal(arrays["dropout/jit0"], arrays["dropout/0"])
        # A dropout-on step under the stateless API: the same seed state twice
        # gives the same loss, the returned state draws other masks, and
        # dropout changes the loss.
        case = "encoder"
        first, again, next_state = arrays[f"{case}/dropout_losses"]
        assert first == again
        assert next_state != first
        assert abs(first - float(arrays[f"{case}/loss"])) > 1e-4
        assert arrays[f"{case}/dropout_grads_finite"]
