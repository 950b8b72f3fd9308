import numpy as np
import pytest

from pretraining.config import BertConfig, OptimizerConfig
from pretraining.model import BertEncoder
from pretraining.optimizers import WarmupLinearDecay, create_optimizer, split_weight_decay


def test_warmup_then_linear_decay():
    schedule = WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=110, end_learning_rate=1e-5)
    expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 1e-5 + (1e-3 - 1e-5) * 0.5, 110: 1e-5, 500: 1e-5}
    for step, value in expected.items():
        np.testing.assert_allclose(float(schedule(step)), value, rtol=1e-6, atol=1e-12)


def test_schedule_rejects_bad_warmup():
    with pytest.raises(ValueError, match="warmup_steps=20, total_steps=10"):
        WarmupLinearDecay(1e-3, warmup_steps=20, total_steps=10)


def test_weight_decay_by_rank(repo_root):
    encoder = BertEncoder(BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json"))
    split = split_weight_decay(encoder.trainable_variables)
    decayed = {v.path for v in split.decayed}
    excluded = {v.path for v in split.excluded}
    assert "bert/layer_0/attention/query/kernel" in decayed
    assert "bert/embeddings/word_embeddings/embeddings" in decayed
    assert "bert/layer_0/attention_layer_norm/gamma" in excluded
    assert "bert/layer_0/attention/query/bias" in excluded
    assert not decayed & excluded
    assert len(decayed) + len(excluded) == len(encoder.trainable_variables)


def test_adamw_step_matches_numpy(repo_root):
    """One AdamW update: decayed kernels shrink, excluded biases do not."""
    encoder = BertEncoder(BertConfig.from_json(f"{repo_root}/configs/models/bert_test.json"))
    variables = encoder.trainable_variables
    config = OptimizerConfig(learning_rate=0.1, warmup_steps=0, weight_decay=0.5)
    optimizer = create_optimizer(config, total_steps=10, variables=variables)
    optimizer.build(variables)
    before = [v.numpy().copy() for v in variables]
    grads = [np.full(v.shape, 0.01, "float32") for v in variables]
    optimizer.apply_gradients(zip(grads, variables))
    lr = 0.1  # step 0 of a schedule with no warmup
    for v, w0, g in zip(variables, before, grads):
        m, s = 0.1 * g, 0.001 * g * g
        # Keras's Adam: bias correction folded into the step size, epsilon
        # added to the uncorrected sqrt(s).
        alpha = lr * np.sqrt(1 - 0.999) / (1 - 0.9)
        decay = 0.5 if len(v.shape) >= 2 else 0.0
        expected = w0 * (1 - lr * decay) - alpha * m / (np.sqrt(s) + 1e-6)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=v.path)
