"""Runs the models that `test_backends.py` saved under TensorFlow on another
Keras backend and writes what they compute.

    KERAS_BACKEND=jax python tests/ports/backend_check.py CASE_DIR OUT.npz

For every case in `CASE_DIR/cases.json`: loads `NAME.keras`, runs it on
`NAME_batch.npz` with dropout off (outputs, and the encoder's outputs for a
pretrainer), generates with the decoding methods the case names, and takes
the loss's gradient with respect to every trainable variable: under JAX
with the stateless API (`model.stateless_call` inside `jax.value_and_grad`),
under PyTorch with autograd. With JAX and a case's `dropout` set, also
dropout-on steps. Then `hashed_dropout` on the inputs of `dropout.npz`.
Arrays go to OUT.npz under `NAME/...` keys, timings and versions to
OUT.npz's `meta` (JSON). Imports Keras only (never TensorFlow), so the
backend is the one in KERAS_BACKEND.
"""

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
from keras import ops  # noqa: E402

from pretraining import dropout, losses, pretrainer  # noqa: E402,F401  (registers the classes)
from pretraining.generation import GenerationConfig, Generator  # noqa: E402

# The decoding runs compared across backends (contexts in the batch file).
GENERATION = {
    "greedy": GenerationConfig(method="greedy", max_new_tokens=6, min_new_tokens=0),
    "beam": GenerationConfig(method="beam", num_beams=3, max_new_tokens=6),
    "sample": GenerationConfig(method="sample", top_k=5, top_p=0.9, temperature=0.8, seed=7,
                               max_new_tokens=6),
}


def case_loss(case, batch, outputs):
    """The loss differentiated for a case (the same function on every backend)."""
    if case["kind"] == "encoder":  # a stand-in loss that reaches every weight:
        # the outputs projected on fixed random directions (in the batch file)
        return (ops.sum(ops.multiply(outputs["sequence_output"], batch["probe_sequence"]))
                + ops.sum(ops.multiply(outputs["pooled_output"], batch["probe_pooled"])))
    sums = losses.task_sums(case["task"], outputs, batch)
    return losses.total_loss(sums, losses.prediction_counts(case["task"], batch,
                                                          case["next_sentence"]))


def _jax_gradients(model, case, batch):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_fn(trainable, non_trainable, training):
        outputs, new_non_trainable = model.stateless_call(trainable, non_trainable, batch,
                                                          training=training)
        return case_loss(case, batch, outputs), new_non_trainable

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True), static_argnums=2)
    (loss, _), grads = grad_fn(trainable, non_trainable, False)
    result = {"loss": np.asarray(loss), "grads": [np.asarray(g) for g in grads]}
    if case["dropout"]:
        # Dropout on: the same seed state twice gives the same loss, the
        # returned state draws other masks, and dropout changes the loss.
        (loss_a, state), grads_a = grad_fn(trainable, non_trainable, True)
        (loss_b, _), _ = grad_fn(trainable, non_trainable, True)
        (loss_c, _), _ = grad_fn(trainable, list(state), True)
        result["dropout_losses"] = np.array([loss_a, loss_b, loss_c], "float32")
        result["dropout_grads_finite"] = np.array(
            all(np.isfinite(np.asarray(g)).all() for g in grads_a))
    return result


def _torch_gradients(model, case, batch):
    for v in model.trainable_variables:
        v.value.grad = None
    loss = case_loss(case, batch, model(batch, training=False))
    loss.backward()
    grads = []
    for v in model.trainable_variables:
        g = v.value.grad
        grads.append(np.zeros(v.shape, "float32") if g is None else g.detach().cpu().numpy())
    return {"loss": ops.convert_to_numpy(loss), "grads": grads}


def main(case_dir, out_path):
    backend = keras.backend.backend()
    cases = json.load(open(os.path.join(case_dir, "cases.json"), encoding="utf-8"))
    arrays, meta = {}, {"backend": backend, "keras": keras.__version__, "seconds": {}}
    for case in cases:
        start = time.perf_counter()
        name = case["name"]
        model = keras.saving.load_model(os.path.join(case_dir, name + ".keras"))
        with np.load(os.path.join(case_dir, name + "_batch.npz")) as f:
            batch = {k: f[k] for k in f.files}
        outputs = model(batch, training=False)
        for key, value in outputs.items():
            arrays[f"{name}/out/{key}"] = ops.convert_to_numpy(value)
        if case["kind"] == "pretrainer":
            for key, value in model.encoder(batch, training=False).items():
                arrays[f"{name}/encoder/{key}"] = ops.convert_to_numpy(value)
        gradients = _jax_gradients if backend == "jax" else _torch_gradients
        result = gradients(model, case, batch)
        arrays[f"{name}/loss"] = result.pop("loss")
        for v, g in zip(model.trainable_variables, result.pop("grads")):
            arrays[f"{name}/grad/{v.path}"] = g
        for key, value in result.items():
            arrays[f"{name}/{key}"] = value
        if case["generate"]:
            generator = Generator(model, batch["gen_ids"].shape[1], sep_id=3)
            for method in case["generate"]:
                arrays[f"{name}/generate/{method}"] = generator.generate(
                    batch["gen_ids"], batch["gen_mask"], batch["gen_segments"],
                    GENERATION[method])
        meta["seconds"][name] = round(time.perf_counter() - start, 2)
    with np.load(os.path.join(case_dir, "dropout.npz")) as f:
        for i, rate in enumerate(f["rates"]):
            x = ops.convert_to_tensor(f[f"x{i}"])
            out = dropout.hashed_dropout(x, float(rate), f[f"seed{i}"])
            arrays[f"dropout/{i}"] = ops.convert_to_numpy(out)
    if backend == "jax":  # the same function traced by XLA
        import jax
        with np.load(os.path.join(case_dir, "dropout.npz")) as f:
            x, seed, rate = f["x0"], f["seed0"], float(f["rates"][0])
        arrays["dropout/jit0"] = np.asarray(
            jax.jit(lambda x, s: dropout.hashed_dropout(x, rate, s))(x, seed))
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = out_path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: KERAS_BACKEND=jax|torch {sys.argv[0]} CASE_DIR OUT.npz")
    main(sys.argv[1], sys.argv[2])
