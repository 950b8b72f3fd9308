"""Shared helpers of the optimizer tests (no tests here).

`run_steps` follows the custom-loop recipe of docs/architecture.md: each replica holds a
different share of the gradient, the shares are all-reduced (SUM), passed
through an optional gradient transform, divided by the replica count and
applied with `optimizer.apply_gradients` inside the replica function.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

STRATEGIES = ["default", "mirrored"]


@functools.cache
def make_strategy(kind):
    """One strategy object per kind for the session. The mirrored one reduces
    through one device rather than with collective ops: several
    MirroredStrategy instances using collectives in one pytest process (other
    test modules create their own) abort with "Shape mismatch in the
    collective instance 100". The all-reduce semantics are the same."""
    if kind == "default":
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return make_strategy(request.param)


def make_variables(values: dict):
    """`{"bert/layer_0/kernel": array}` → Keras variables with those paths."""
    variables = []
    for path, value in values.items():
        *scopes, name = path.split("/")
        scope_stack = [keras.name_scope(s) for s in scopes]
        for s in scope_stack:
            s.__enter__()
        try:
            variables.append(keras.Variable(np.asarray(value, "float32"), name=name))
        finally:
            for s in reversed(scope_stack):
                s.__exit__(None, None, None)
    return variables


def split_across_replicas(grad, n, rng):
    """`n` shares that sum to `grad` and differ from each other."""
    if n == 1:
        return np.asarray(grad, "float32")[None]
    noise = rng.normal(size=grad.shape).astype("float32")
    first = (0.3 * grad + noise).astype("float32")
    return np.stack([first, (grad - first).astype("float32")])


def run_steps(strategy, optimizer, variables, grads_per_step, transform=None, ema=None):
    """Applies one update per entry of `grads_per_step` (lists of NumPy
    arrays, the full gradient). Returns the global norms the transform saw."""
    n = strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)

    @tf.function
    def step(shares):
        def replica_fn():
            context = tf.distribute.get_replica_context()
            rid = context.replica_id_in_sync_group
            grads = [tf.gather(s, rid) for s in shares]
            grads = context.all_reduce("SUM", grads)
            norm = tf.linalg.global_norm(grads)
            if transform is not None:
                grads, norm = transform(grads, variables, optimizer.iterations)
            grads = [g / n for g in grads]
            optimizer.apply_gradients(zip(grads, variables))
            if ema is not None:
                ema.update()
            return norm
        return strategy.reduce("MEAN", strategy.run(replica_fn), axis=None)

    norms = []
    for grads in grads_per_step:
        shares = [tf.constant(split_across_replicas(np.asarray(g, "float32"), n, rng))
                  for g in grads]
        norms.append(float(step(shares)))
    return norms


def build(strategy, make_optimizer, values):
    """Variables from `values` and a built optimizer, in the strategy's scope."""
    with strategy.scope():
        variables = make_variables(values)
        optimizer = make_optimizer()
        optimizer.build(variables)
    return variables, optimizer


def numpy_adam_moments(values, grads_per_step, update, b1=0.9, b2=0.999):
    """The NumPy reference loop of the Adam family in float64: the moments
    `m, v` of every variable, then `update(i, w, m, v, t)` returns the new
    weight `i` at step `t` (1-based). Returns the final weights."""
    w = [np.array(v, "float64") for v in values]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            w[i] = update(i, w[i], m[i], v[i], t)
    return w
