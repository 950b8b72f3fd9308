"""`OptimizerConfig` validation and `create_optimizer` for every name."""

import json

import pytest

from pretraining.config import OptimizerConfig
from pretraining.optimizers import LAMB, SGD, AdamW, create_optimizer


@pytest.mark.parametrize("data, message", [
    ({"name": "adagrad"}, "name='adagrad'"),
    ({"schedule": "step"}, "schedule='step'"),
    ({"power": 0.0}, "power=0.0"),
    ({"momentum": 1.0}, "momentum=1.0"),
    ({"ema_decay": 1.5}, "ema_decay=1.5"),
    ({"lookahead_steps": -1}, "lookahead_steps=-1"),
    ({"lookahead_alpha": 0.0}, "lookahead_alpha=0.0"),
    ({"layerwise_lr_decay": 0.0}, "layerwise_lr_decay=0.0"),
    ({"weight_decay_exclude": ["("]}, "weight_decay_exclude"),
    ({"lr_multipliers": {"embeddings": -1}}, "lr_multipliers\\['embeddings'\\]=-1"),
    ({"schedule": "piecewise"}, "piecewise"),
    ({"lazy_embeddings": True, "name": "lamb"}, "name='lamb'"),
    ({"gradient_transforms": [{"type": "clip"}]}, "gradient_transforms\\[0\\]"),
    ({"gradient_transforms": [{"type": "clip_by_norm"}]}, "missing keys \\['max_norm'\\]"),
    ({"gradient_transforms": [{"type": "clip_by_norm", "max_norm": 0}]}, "max_norm=0"),
    ({"gradient_transforms": [{"type": "noise", "stddev": 0.1, "seed": 1, "scale": 2}]},
     "unknown keys \\['scale'\\]"),
    ({"gradient_transforms": [{"type": "clip_by_value", "max_value": 1, "min_value": 2}]},
     "min_value=2, max_value=1"),
    ({"gradient_transforms": [{"type": "custom", "function": "f"}]}, "function='f'"),
])
def test_validation_names_field_and_value(data, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig.from_dict(data)


def test_types_and_unknown_keys_rejected():
    with pytest.raises(TypeError, match="optimizer.lr_multipliers"):
        OptimizerConfig.from_dict({"lr_multipliers": ["embeddings"]})
    with pytest.raises(ValueError, match="lookahead"):
        OptimizerConfig.from_dict({"lookahed_steps": 5})


def test_full_section_round_trips_through_json():
    data = {"name": "lamb", "schedule": "piecewise", "piecewise": {"0": 0.0, "100": 1.0},
            "weight_decay_exclude": ["pooler/"], "layer_adaptation_exclude": ["embeddings/"],
            "lr_multipliers": {"embeddings/": 0.5}, "layerwise_lr_decay": 0.9,
            "gradient_transforms": [{"type": "noise", "stddev": 0.01, "seed": 3}],
            "ema_decay": 0.999, "lookahead_steps": 5, "bias_correction": False}
    config = OptimizerConfig.from_dict(data)
    again = OptimizerConfig.from_dict(json.loads(config.to_json()))
    assert again == config and again.piecewise == {0: 0.0, 100: 1.0}


@pytest.mark.parametrize("name, cls", [("adamw", AdamW), ("adam", AdamW), ("lamb", LAMB),
                                       ("sgd", SGD)])
def test_create_optimizer_names(name, cls):
    config = OptimizerConfig(name=name, bias_correction=False, lookahead_steps=2,
                             layerwise_lr_decay=0.8, weight_decay_exclude=["pooler"])
    optimizer = create_optimizer(config, total_steps=100)
    assert isinstance(optimizer, cls)
    assert optimizer.lookahead_steps == 2 and optimizer.layerwise_lr_decay == 0.8
    assert optimizer.decoupled_weight_decay == (0.0 if name == "adam" else 0.01)
    if name != "sgd":
        assert optimizer.bias_correction is False
