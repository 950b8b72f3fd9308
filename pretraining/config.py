"""Typed configuration: Google's `BertConfig` and the experiment sections.

Every config is a dataclass with `from_dict`/`from_json`/`to_dict`/`to_json`.
Unknown keys are errors that list them; `__post_init__` validates values and
names the field and the value received.
"""

import dataclasses
import json
import os
import typing

from pretraining.config_base import (Config, check_keys, coerce, require_choice,
                                     require_non_negative, require_positive,
                                     require_probability)
from pretraining.optimizer_config import OptimizerConfig

# The names the model, the heads and the trainer share, kept here as plain
# strings so that reading a config imports no Keras (`layers`,
# `attention_masks` and the pretrainer take them from here).
TASKS = ("mlm", "lm", "seq2seq")
MASK_TYPES = ("bidirectional", "causal", "unilm", "prefix")
# The attention masks each task may train with (a bidirectional mask in a
# next-token task would let every position see the token it predicts).
TASK_MASKS = {"mlm": MASK_TYPES, "lm": ("causal",), "seq2seq": ("unilm",)}
# `hidden_act` values. Ours follow Google's bert_config.json: "gelu" is the tanh
# approximation; the format readers/writers map Hugging Face's names onto these.
TANH_GELUS = ("gelu", "gelu_new", "gelu_tanh")
ACTIVATIONS = (*TANH_GELUS, "gelu_exact", "relu")
# `BertConfig.layer_norm_position` and `feed_forward` values; the first of
# each is Google's BERT (and the only one its and Hugging Face's formats hold).
LAYER_NORM_POSITIONS = ("post", "pre")
FEED_FORWARDS = ("dense", "glu")
# Keras's policy names; "float32" is Keras's own default.
MIXED_PRECISION_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

# Keys found in Google's released `bert_config.json` files (Chinese BERT, the
# multilingual models) that this framework does not use. Tolerated, ignored.
_GOOGLE_EXTRA_KEYS = frozenset({
    "directionality", "pooler_fc_size", "pooler_num_attention_heads",
    "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type",
})

# Experiment fields that hold a path: relative values in an experiment file are
# taken from the file's directory; values given with --override, from the
# current directory.
PATH_FIELDS = (("data", "train_dir"), ("data", "eval_dir"), ("train", "init_checkpoint"))


def resolve_path(path: str, base_dir: str | None = None) -> str:
    """Resolves a path from an experiment: `gs://` (any `scheme://`) and
    absolute paths are kept, `~` is expanded, `./…` is taken from the current
    directory, and any other relative path from `base_dir` (the experiment
    file's directory; the current directory when None)."""
    if not path or "://" in path:
        return path
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return os.path.normpath(path)
    if base_dir is None or path == "." or path.startswith(("./", "." + os.sep)):
        return os.path.abspath(path)
    return os.path.normpath(os.path.join(os.path.abspath(base_dir), path))


@dataclasses.dataclass
class BertConfig(Config):
    """Google's `bert_config.json`, field for field, plus our additions.

    Args:
        vocab_size: int. Rows of the word-embedding matrix (and MLM logits).
            Required.
        hidden_size: int. Width of every hidden state. Defaults to 768.
        num_hidden_layers: int. Transformer layers. Defaults to 12.
        num_attention_heads: int. Heads per layer; must divide `hidden_size`.
            Defaults to 12.
        intermediate_size: int. Width of the feed-forward layer. Defaults to
            3072.
        hidden_act: str. Feed-forward activation: "gelu" (Google's tanh form;
            "gelu_tanh" and "gelu_new" are aliases) or "gelu_exact" (the erf
            form Hugging Face's "gelu" means) or "relu". Defaults to "gelu".
        hidden_dropout_prob: float. Dropout on embeddings and every residual
            branch (applied as a multiple of 1/65536: 0.1 runs as 0.100006).
            Defaults to 0.1.
        attention_probs_dropout_prob: float. Dropout on attention
            probabilities (the same 1/65536 rounding). Defaults to 0.1.
        max_position_embeddings: int. Longest sequence. Defaults to 512.
        type_vocab_size: int. Segment ids. Defaults to 2.
        initializer_range: float. Standard deviation of the truncated-normal
            initialiser. Defaults to 0.02.
        attention_mask_type: str. "bidirectional", "causal", "unilm" or
            "prefix". Defaults to "bidirectional".
        prefix_length: int. Bidirectional prefix for "prefix". Defaults to 0.
        condition_size: int. >0: Conditional LayerNorm on a condition vector
            of this size (with `condition_num_classes`, the width of the
            learned class embedding). Defaults to 0.
        condition_num_classes: int. >0: the condition is a class id in
            `[0, condition_num_classes)` (records' `condition` `int[1]`),
            looked up in a learned embedding of width `condition_size`;
            0: the condition is a float vector of `condition_size`. Defaults
            to 0.
        condition_hidden_size: int. >0: the condition goes through a Dense of
            this width first. Defaults to 0.
        condition_hidden_act: str. That Dense's activation. Defaults to
            "linear".
        layer_norm_eps: float. LayerNorm epsilon (Hugging Face's
            `layer_norm_eps` when read from its config.json). Defaults to
            1e-12, Google's.
        layer_norm_position: str. "post": Google's BERT, `LN(x + f(x))` in
            every block; "pre": pre-LayerNorm, `x + f(LN(x))` in every block
            and a LayerNorm after the last block (`final_layer_norm`; the
            embeddings keep theirs), which trains stably at higher learning
            rates. Google's and Hugging Face's BERT formats cannot hold "pre":
            the converter refuses to export it to them. Defaults to "post".
        feed_forward: str. "dense": Google's `act(x W1) W3`; "glu": the gated
            linear unit `(act(x W1) * (x W2)) W3` (GEGLU with a GELU
            `hidden_act`), `W2` (`intermediate_linear`) as wide as `W1`
            (`intermediate_size`): one more `hidden × intermediate_size`
            matrix per block. Not exportable to Google's or Hugging Face's
            BERT formats either. Defaults to "dense".
    """

    _section = "model"

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    # Our additions; the defaults are Google's BERT. Not written to Google's
    # or Hugging Face's config files (see `to_google_dict`).
    attention_mask_type: str = "bidirectional"  # | causal | unilm | prefix
    prefix_length: int = 0  # for attention_mask_type="prefix"
    condition_size: int = 0  # >0: Conditional LayerNorm on a condition vector of this size
    condition_hidden_size: int = 0  # >0: condition → Dense(condition_hidden_size) first
    condition_hidden_act: str = "linear"
    condition_num_classes: int = 0  # >0: class ids → learned embedding of condition_size
    # LayerNorm epsilon: Google's 1e-12; Hugging Face's `layer_norm_eps` when
    # read from its config.json.
    layer_norm_eps: float = 1e-12
    # Recipe options (MosaicBERT, Cramming); the defaults are Google's BERT,
    # and neither Google's nor Hugging Face's BERT format can hold the others.
    layer_norm_position: str = "post"  # | pre
    feed_forward: str = "dense"  # | glu

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None, tolerated=_GOOGLE_EXTRA_KEYS):
        return super().from_dict(data, where, tolerated)

    def __post_init__(self):
        require_positive(self, "vocab_size", "hidden_size", "num_hidden_layers",
                         "num_attention_heads", "intermediate_size",
                          "max_position_embeddings", "type_vocab_size", "initializer_range",
                          "layer_norm_eps")
        require_probability(self, "hidden_dropout_prob", "attention_probs_dropout_prob")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                "`hidden_size` must be divisible by `num_attention_heads`. Received: "
                f"hidden_size={self.hidden_size}, num_attention_heads={self.num_attention_heads}")
        require_choice("attention_mask_type", self.attention_mask_type, MASK_TYPES)
        require_choice("layer_norm_position", self.layer_norm_position, LAYER_NORM_POSITIONS)
        require_choice("feed_forward", self.feed_forward, FEED_FORWARDS)
        if self.attention_mask_type == "prefix" and not (
                0 < self.prefix_length <= self.max_position_embeddings):
            raise ValueError("`prefix_length` must be in [1, max_position_embeddings] with "
                             f"attention_mask_type='prefix'. Received: "
                             f"prefix_length={self.prefix_length}")
        require_non_negative(self, "prefix_length", "condition_size", "condition_hidden_size",
                             "condition_num_classes")
        if self.condition_num_classes and not self.condition_size:
            raise ValueError("`condition_num_classes` needs `condition_size` > 0 (the width of "
                             "the class embedding). Received: condition_size=0, "
                             f"condition_num_classes={self.condition_num_classes}")
        if self.condition_hidden_size and not self.condition_size:
            raise ValueError("`condition_hidden_size` needs `condition_size` > 0 (the size of "
                             "the condition vector). Received: condition_size=0")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"`hidden_act` must be one of {list(ACTIVATIONS)} ('gelu' is "
                             "Google's tanh approximation, 'gelu_exact' the erf form). "
                             f"Received: hidden_act={self.hidden_act!r}")


GOOGLE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "hidden_act", "hidden_dropout_prob",
                 "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                 "initializer_range")


def to_google_dict(config: BertConfig) -> dict:
    """Only the fields of Google's `bert_config.json`."""
    return {name: getattr(config, name) for name in GOOGLE_FIELDS}


@dataclasses.dataclass
class DataConfig(Config):
    """Where the records are (directories written by `data_pipeline.build`),
    and how they are read.

    Args:
        train_dir: str. The train records. Required.
        eval_dir: str. The eval records; "" for none. Defaults to "".
        shuffle_buffer: int. Records shuffled together. Defaults to 10,000.
        shard_by: str. How hosts split the data, "batch" or "files".
            Defaults to "batch".
        masked_lm_prob: float | None. Dynamic-masking train records: the
            fraction of eligible tokens masked in each sequence (0.15 is
            Google's, 0.3 MosaicBERT's), instead of the rate the records were
            built with; it must fit their `max_predictions_per_seq` (refused
            otherwise), and static records are refused. The eval records keep
            their own rate, so held-out figures stay comparable across
            runs. None (null): the train records' own rate. Defaults to None.
    """

    _section = "data"

    train_dir: str
    eval_dir: str = ""
    shuffle_buffer: int = 10_000
    # How hosts split the data. "batch": every host reads the whole stream and
    # keeps its rows of each global batch, so any number of hosts sees exactly
    # what one device sees (same numbers). "files": each host reads disjoint
    # shard files (less I/O on large pods; the order then depends on the hosts).
    shard_by: str = "batch"
    # Dynamic masking's rate at training time; None: the train records' own.
    masked_lm_prob: float | None = None

    def __post_init__(self):
        if self.masked_lm_prob is not None:
            value = self.masked_lm_prob
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 < value < 1.0:
                raise ValueError("`data.masked_lm_prob` must be a number in (0, 1) (the "
                                 "fraction of tokens masked), or null for the records' own "
                                 f"rate. Received: masked_lm_prob={value!r}")
            self.masked_lm_prob = float(value)
        if not self.train_dir:
            raise ValueError("`data.train_dir` must name a directory of records made by "
                             "`python -m data_pipeline.build`. Received: train_dir=''")
        require_positive(self, "shuffle_buffer")
        require_choice("data.shard_by", self.shard_by, ("batch", "files"))


ADVERSARIAL_METHODS = ("fgm",)


def check_adversarial(value, where: str) -> dict:
    """An adversarial-training setting (`where`: its field), checked and
    completed: {} (off) or {"method": "fgm", "epsilon": float > 0}."""
    if not isinstance(value, dict):
        raise TypeError(f"`{where}` must be a JSON object such as "
                        f'{{"method": "fgm", "epsilon": 1.0}}, or {{}} for none. '
                        f"Received: {where}={value!r}")
    if not value:
        return {}
    unknown = sorted(set(value) - {"method", "epsilon"})
    if unknown:
        raise ValueError(f"Unknown key(s) in `{where}`: {unknown}. Allowed keys: "
                         "['epsilon', 'method'].")
    method = value.get("method", "fgm")
    require_choice(f"{where}.method", method, ADVERSARIAL_METHODS)
    epsilon = value.get("epsilon", 1.0)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) \
            or not 0 < epsilon < float("inf"):
        raise ValueError(f"`{where}.epsilon` must be a finite number > 0 (the norm of the "
                         f"embedding perturbation; 1.0 is usual). Received: epsilon={epsilon!r}")
    return {"method": method, "epsilon": float(epsilon)}


@dataclasses.dataclass
class TrainConfig(Config):
    """Loop length, batch, seeds and the checkpoint / eval cadence."""

    _section = "train"

    steps: int = 1000
    global_batch_size: int = 32
    seed: int = 0
    steps_per_loop: int = 10
    log_every: int = 0  # 0: once per loop
    checkpoint_every: int = 500
    eval_every: int = 0  # 0: only at the end
    eval_steps: int = 0  # 0: the whole eval split
    # >0: TensorBoard histograms of the weights and of each layer's update/weight
    # ratio at the first logged step at or after every multiple; 0: none (each
    # copies the weights to the host).
    histogram_every: int = 0
    keep_checkpoints: int = 3
    jit_compile: bool = False
    max_nan_skips: int = 0  # >0: restore the last checkpoint and skip bad data, N times
    # Each update's global batch is computed as this many equal micro-batches
    # whose gradients are summed: same numbers, 1/k of the activation memory.
    gradient_accumulation_steps: int = 1
    # Weights to start from when the run has no checkpoint of its own: a
    # checkpoint (prefix or directory) written by this trainer or converter, or
    # Google's bert_model.ckpt. The encoder must match; heads are loaded when
    # present.
    init_checkpoint: str = ""
    # Save `ckpt-0` (the initial weights, before the first update) when the run
    # starts without a checkpoint of its own: resume or compare from step 0.
    # Rotated away like the others once `keep_checkpoints` newer ones exist.
    save_initial_checkpoint: bool = False
    # Peak FLOP/s of the hardware (all replicas), for the MFU in the log; 0: no MFU.
    peak_tflops: float = 0.0
    # "float32", "mixed_bfloat16" (TPU, recent GPUs) or "mixed_float16"
    # (GPUs; with dynamic loss scaling). LayerNorm, softmax, mask bias, logits
    # and losses stay float32.
    mixed_precision: str = "float32"
    # Adversarial training on the word embeddings (`pretraining.adversarial`):
    # {"method": "fgm", "epsilon": 1.0}; {}: off. About 2x the step time.
    adversarial: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.adversarial = check_adversarial(self.adversarial, "train.adversarial")
        require_positive(self, "steps", "global_batch_size", "steps_per_loop",
                         "checkpoint_every", "keep_checkpoints", "gradient_accumulation_steps")
        if self.mixed_precision == "":  # the old default, in earlier runs' config.json
            self.mixed_precision = "float32"
        require_choice("train.mixed_precision", self.mixed_precision, MIXED_PRECISION_POLICIES)
        require_non_negative(self, "log_every", "eval_every", "eval_steps", "max_nan_skips",
                             "peak_tflops", "histogram_every", prefix="train.")


@dataclasses.dataclass
class ExperimentConfig(Config):
    """A whole experiment: model, data, optimizer, train."""

    _section = "experiment"

    model: BertConfig
    data: DataConfig
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    task: str = "mlm"
    description: str = ""

    _SECTIONS = {"model": BertConfig, "data": DataConfig,
                 "optimizer": OptimizerConfig, "train": TrainConfig}

    def __post_init__(self):
        require_choice("task", self.task, TASKS)
        allowed = TASK_MASKS[self.task]
        if self.model.attention_mask_type not in allowed:
            raise ValueError(
                f"task={self.task!r} needs model.attention_mask_type in {list(allowed)}. "
                f"Received: attention_mask_type={self.model.attention_mask_type!r} "
                f"(set it in the model config or with "
                f"--override=model.attention_mask_type={allowed[0]}).")

    @classmethod
    def from_json(cls, path: str, **kwargs):
        """Reads an experiment: a JSON file, or the name of a shipped one
        (`demo`, `smoke_cpu`, …: `pretraining/configs/experiments/`). Relative
        paths inside it are taken from its directory (`./…` from the current
        directory); `overrides` from the current directory."""
        from pretraining import configs
        path = configs.find("experiments", path)
        return super().from_json(path, base_dir=os.path.dirname(os.path.abspath(path)),
                                 **kwargs)

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None, tolerated=frozenset(),
                  overrides: list[str] = (), base_dir: str | None = None):
        """`base_dir`: the directory relative paths in `data` are taken from
        (the current directory when None)."""
        check_keys(cls, data, "experiment")
        data = json.loads(json.dumps(data))  # deep copy
        for section in ("model", "data"):
            if section not in data:
                raise ValueError(f"The experiment has no `{section}` section. "
                                 f"Sections: {sorted(cls._SECTIONS)}.")
        if isinstance(data["model"], str):
            from pretraining import configs
            model_path = configs.find("models", data["model"], base_dir)
            try:
                with open(model_path, encoding="utf-8") as f:
                    data["model"] = json.load(f)
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"`model` names {data['model']!r} ({model_path}), which could "
                                 f"not be read as a model config JSON ({e}).") from None
        for section, field in PATH_FIELDS:
            value = data.get(section, {}).get(field) if isinstance(data.get(section), dict) \
                else None
            if isinstance(value, str):
                data[section][field] = resolve_path(value, base_dir)
        for item in overrides:
            _apply_override(data, item)
        kwargs = {}
        for name, value in data.items():
            if name in cls._SECTIONS:
                kwargs[name] = cls._SECTIONS[name].from_dict(value, name)
            else:
                kwargs[name] = coerce(value, str, name)
        return cls(**kwargs)


def _apply_override(data: dict, item: str):
    """Applies `section.field=value`, parsing value with the field's type."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ValueError(f"--override must look like section.field=value. Received: {item!r}")
    key, raw = item.split("=", 1)
    section, field = key.split(".", 1)
    if section not in ExperimentConfig._SECTIONS:
        raise ValueError(f"--override {item!r}: unknown section {section!r}. "
                         f"Sections: {sorted(ExperimentConfig._SECTIONS)}.")
    hints = typing.get_type_hints(ExperimentConfig._SECTIONS[section])
    if field not in hints or field.startswith("_"):
        raise ValueError(f"--override {item!r}: `{section}` has no field {field!r}. "
                         f"Fields: {sorted(k for k in hints if not k.startswith('_'))}.")
    kind = hints[field]
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            value = raw.lower() in ("true", "1")
        elif kind in (int, float):
            value = kind(raw)
        elif kind == float | None:  # data.masked_lm_prob=0.3, or =null
            value = None if raw.lower() in ("null", "none") else float(raw)
        elif kind in (dict, list):  # JSON: train.adversarial={"epsilon": 0.5}
            value = json.loads(raw)
        else:
            value = raw
    except ValueError:
        raise ValueError(f"--override {item!r}: {section}.{field} must be of type "
                         f"{getattr(kind, '__name__', kind)}. Received: {raw!r}") from None
    if (section, field) in PATH_FIELDS:
        value = resolve_path(value)  # typed on the command line: the current directory
    data.setdefault(section, {})[field] = value
