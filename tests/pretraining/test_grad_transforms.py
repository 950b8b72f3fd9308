"""Gradient transforms on the all-reduced gradient, default and mirrored."""

import numpy as np
import pytest
import tensorflow as tf

from pretraining.config import OptimizerConfig
from pretraining.optimizers import SGD, build_gradient_transform, per_variable
from tests.pretraining.test_optim_support import (build, make_strategy, make_variables,
                                                  run_steps, strategy)  # noqa: F401

VALUES = {"bert/layer_0/kernel": np.zeros((3, 2)), "bert/layer_0/bias": np.zeros(2),
          "mlm/output_bias": np.zeros(4)}
GRADS = [np.array([[3.0, -4.0], [1.0, 2.0], [0.5, 0.0]], "float32"),
         np.array([10.0, -0.05], "float32"), np.array([0.3, -0.2, 7.0, 0.0], "float32")]


def _sgd():
    return SGD(1.0, momentum=0.0)


def _delta(variables):
    return [-v.numpy() for v in variables]  # lr 1, start 0: the applied gradient


def test_global_clip_after_all_reduce_equals_one_device(strategy):  # noqa: F811
    transform = build_gradient_transform(OptimizerConfig(clip_norm=2.0))
    variables, optimizer = build(strategy, _sgd, VALUES)
    norms = run_steps(strategy, optimizer, variables, [GRADS], transform)
    norm = np.sqrt(sum(np.sum(g.astype("float64") ** 2) for g in GRADS))
    assert norms[0] == pytest.approx(norm, rel=1e-5)
    for got, g in zip(_delta(variables), GRADS):
        np.testing.assert_allclose(got, g * 2.0 / norm, rtol=1e-5, atol=1e-6)


def test_per_variable_norm_and_value_clipping(strategy):  # noqa: F811
    config = OptimizerConfig(clip_norm=0.0, gradient_transforms=[
        {"type": "clip_by_norm", "pattern": "kernel$", "max_norm": 1.0},
        {"type": "clip_by_value", "pattern": "bias", "max_value": 0.5, "min_value": -0.01}])
    variables, optimizer = build(strategy, _sgd, VALUES)
    run_steps(strategy, optimizer, variables, [GRADS], build_gradient_transform(config))
    kernel, bias, output_bias = _delta(variables)
    np.testing.assert_allclose(kernel, GRADS[0] / np.linalg.norm(GRADS[0]), rtol=1e-5)
    np.testing.assert_allclose(bias, [0.5, -0.01], rtol=1e-6)
    np.testing.assert_allclose(output_bias, [0.3, -0.01, 0.5, 0.0], rtol=1e-6)


def test_noise_is_deterministic_per_seed_and_step():
    variables = make_variables(VALUES)
    grads = [tf.zeros(np.shape(v)) for v in VALUES.values()]

    def noise(seed, step, stddev=0.1, gamma=0.0):
        config = OptimizerConfig(clip_norm=0.0, gradient_transforms=[
            {"type": "noise", "stddev": stddev, "seed": seed, "gamma": gamma}])
        return [g.numpy() for g in build_gradient_transform(config)(grads, variables, step)[0]]

    a, b = noise(1, 5), noise(1, 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], noise(1, 6)[0])
    assert not np.allclose(a[0], noise(2, 5)[0])
    assert not np.allclose(a[1], a[2][:2])  # different streams per variable
    np.testing.assert_allclose(noise(1, 3, gamma=0.5)[0], noise(1, 3, 0.05)[0], rtol=1e-6)
    sample = np.concatenate([x.ravel() for x in noise(7, 0, stddev=1.0)])
    assert 0.3 < sample.std() < 2.0


def test_noise_identical_on_replicas():
    strategy = make_strategy("mirrored")
    config = OptimizerConfig(clip_norm=0.0, gradient_transforms=[
        {"type": "noise", "stddev": 0.5, "seed": 3}])
    variables, optimizer = build(strategy, _sgd, VALUES)
    run_steps(strategy, optimizer, variables, [GRADS], build_gradient_transform(config))
    one = make_strategy("default")
    variables_1, optimizer_1 = build(one, _sgd, VALUES)
    run_steps(one, optimizer_1, variables_1, [GRADS], build_gradient_transform(config))
    for v, w in zip(variables, variables_1):
        np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
        for component in v.value.values:  # both replicas hold the same weights
            np.testing.assert_array_equal(component.numpy(), v.numpy())


def double(gradient, variable):
    return 2.0 * gradient


def test_custom_function_from_config_and_python():
    variables = make_variables(VALUES)
    grads = [tf.constant(g) for g in GRADS]
    config = OptimizerConfig(clip_norm=0.0, gradient_transforms=[
        {"type": "custom", "function": "tests.pretraining.test_grad_transforms:double",
         "pattern": "output_bias"}])
    pipeline = build_gradient_transform(config, extra=[per_variable(lambda g, v: g + 1.0,
                                                                    "layer_0/bias")])
    out, norm = pipeline(grads, variables, 0)
    np.testing.assert_array_equal(out[0].numpy(), GRADS[0])
    np.testing.assert_allclose(out[1].numpy(), GRADS[1] + 1.0)
    np.testing.assert_allclose(out[2].numpy(), 2.0 * GRADS[2])
    with pytest.raises(ValueError, match="function="):
        build_gradient_transform(OptimizerConfig(gradient_transforms=[
            {"type": "custom", "function": "no_such_module:f"}]))


@pytest.mark.parametrize("jit", [True, False])
def test_matrix_product_global_norm_matches_numpy(jit):
    # The trainers' XLA form (one matrix-vector product per matrix) against NumPy
    # in float64, with a table of embedding-like size among vectors and scalars.
    from pretraining.optimizers.gradient_transforms import global_norm
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3000, 64)), rng.normal(size=(2, 5, 7)), rng.normal(size=(64,)),
              np.array(3.0), rng.normal(size=(64, 300)) * 1e-3]
    tensors = [tf.constant(a, tf.float32) for a in arrays] + [None]
    want = np.sqrt(sum(np.sum(a.astype("float64") ** 2) for a in arrays))
    fn = tf.function(lambda ts: global_norm(ts, matrix_products=True), jit_compile=jit)
    assert float(fn(tensors)) == pytest.approx(want, rel=1e-6)
    assert float(global_norm(tensors)) == pytest.approx(want, rel=1e-6)  # TensorFlow's form


def test_matrix_product_clipping_equals_tensorflow_clipping():
    # The pipeline built for a whole-step XLA program clips and reports as the default one.
    config = OptimizerConfig(clip_norm=2.0)
    variables = make_variables(VALUES)
    grads = [tf.constant(g) for g in GRADS]
    default = build_gradient_transform(config)
    products = build_gradient_transform(config, matrix_products=True)
    assert products.matrix_products and not default.matrix_products
    want, want_norm = default(grads, variables, 0)
    got, got_norm = tf.function(lambda g: products(g, variables, 0), jit_compile=True)(grads)
    assert float(got_norm) == pytest.approx(float(want_norm), rel=1e-6)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
