"""What makes a TPU run fail late and expensively, checked on CPU: the whole
train step (forward, backward, all-reduce, clipping, AdamW update) compiles
with XLA, every shape is static and the inputs are int32."""

import re

import tensorflow as tf

from pretraining.trainer import Trainer
from tests.conftest import tiny_experiment


def test_whole_train_step_compiles_with_static_shapes(mlm_data, tmp_path):
    trainer = Trainer(tiny_experiment(mlm_data), str(tmp_path))
    dataset = trainer._dataset(trainer.train_dir, training=True)
    spec = dataset.element_spec
    for name, tensor_spec in spec.items():
        assert tensor_spec.shape.is_fully_defined(), (name, tensor_spec.shape)
        assert tensor_spec.dtype in (tf.int32, tf.float32), (name, tensor_spec.dtype)
        if name != "masked_lm_weights":
            assert tensor_spec.dtype == tf.int32, name
    batch = next(iter(dataset))

    trainer._compiled_forward_backward = trainer._forward_backward
    step = tf.function(trainer._replica_step, jit_compile=True)
    before = trainer.state.optimizer.iterations.numpy()
    outputs = step(batch)  # raises if any op cannot be compiled by XLA
    assert trainer.state.optimizer.iterations.numpy() == before + 1
    assert all(v.shape.rank == 0 for v in outputs.values())

    hlo = step.experimental_get_compiler_ir(batch)(stage="hlo")
    # Bounded-dynamic dimensions print as `<=N` in HLO shapes.
    assert not re.search(r"\[[^\]]*<=", hlo), "dynamic shape in the compiled train step"
