"""The fine-tuning experiment: `model` (optional: taken from `--init`),
`optimizer`, `train` (the pretraining sections, same fields) and `finetune`.

Fine-tuning's recipe replaces three optimizer defaults when the experiment
does not set them: AdamW at `learning_rate` 2e-5 with `warmup_steps` 10% of
`train.steps` and a linear decay to 0 (`FINETUNE_OPTIMIZER_DEFAULTS`).
"""

import dataclasses
import json
import os
import typing

from pretraining.config import (BertConfig, TrainConfig, _apply_override, check_adversarial,
                                resolve_path)
from pretraining.config_base import (Config, check_keys, coerce, require_choice,
                                     require_positive, require_probability)
from pretraining.optimizer_config import OptimizerConfig

TASKS = ("single_label", "multi_label", "regression")
MULTI_LABEL_LOSSES = ("softmax_ce", "sigmoid_bce")
# The dev metric that picks the best checkpoint, by task (`finetune.select_by`).
SELECT_BY = {"single_label": "accuracy", "multi_label": "micro_f1", "regression": "pearson"}
WARMUP_FRACTION = 0.1
FINETUNE_OPTIMIZER_DEFAULTS = {"learning_rate": 2e-5, "schedule": "linear"}
# Fields that hold a path: relative values in an experiment file are taken
# from the file's directory.
PATH_FIELDS = ("train_file", "eval_file", "test_file", "init", "tokenizer", "tfds_data_dir")
# The fields a task of `finetune.tasks` may set (the data of one task).
TASK_FIELDS = ("name", "task", "train_file", "eval_file", "test_file", "text_field",
               "text_pair_field", "label_field", "label_separator", "labels", "weight",
               "select_by")


@dataclasses.dataclass
class FinetuneConfig(Config):
    """The `finetune` section: data, task, head and what to start from.

    Args:
        task: str. `single_label`, `multi_label` or `regression`. Defaults to
            "single_label".
        train_file: str. TSV with a header, JSONL, or `tfds:NAME/split`.
            Defaults to "" (required unless `tasks` is given).
        eval_file: str. The dev split (same formats). Defaults to "": no
            evaluation.
        test_file: str. Predicted after training into `predictions.jsonl`.
            Defaults to "".
        text_field: str. Column/field of the text. Defaults to "text".
        text_pair_field: str. Column/field of the second text of pairs.
            Defaults to "": single sentences.
        label_field: str. Column/field of the label. Defaults to "label".
        label_separator: str. Multi-label labels joined in one string by this.
            Defaults to "": a list field.
        labels: list of str. The label list; empty: the sorted labels of the
            train split. Defaults to [].
        tfds_data_dir: str. Where TFDS datasets are prepared (never
            downloaded). Defaults to "".
        max_seq_length: int. Tokens per example, `[CLS]` and `[SEP]`s
            included; at most the model's `max_position_embeddings`.
            Defaults to 128.
        tokenizer: str. SentencePiece model or WordPiece `vocab.txt`.
            Defaults to "": the one of the `init` checkpoint.
        init: str. Our run directory, a Google BERT checkpoint directory or a
            Hugging Face directory. Defaults to "".
        from_scratch: bool. Take only `init`'s model config and tokenizer;
            random weights. Defaults to False.
        classifier_dropout: float. Dropout on the pooled output before the
            classifier. Defaults to 0.1.
        multi_label_loss: str. `softmax_ce` (ZLPR) or `sigmoid_bce`.
            Defaults to "softmax_ce".
        select_by: str. The dev metric of the best checkpoint. Defaults to
            "": accuracy, micro_f1 or pearson by task.
        adversarial: dict. `{"method": "fgm", "epsilon": 1.0}`; empty: off.
            Defaults to {}.
        tasks: list of dict. Multi-task: one dict per task with the data
            fields above (`name` required). Defaults to [].
        condition_size: int. Multi-task: width of the task embedding that
            conditions every LayerNorm. Defaults to 16.
    """

    _section = "finetune"

    task: str = "single_label"
    train_file: str = ""
    eval_file: str = ""
    test_file: str = ""
    text_field: str = "text"
    text_pair_field: str = ""
    label_field: str = "label"
    label_separator: str = ""
    labels: list = dataclasses.field(default_factory=list)
    tfds_data_dir: str = ""
    max_seq_length: int = 128
    tokenizer: str = ""
    init: str = ""
    from_scratch: bool = False
    classifier_dropout: float = 0.1
    multi_label_loss: str = "softmax_ce"
    select_by: str = ""
    adversarial: dict = dataclasses.field(default_factory=dict)
    tasks: list = dataclasses.field(default_factory=list)
    condition_size: int = 16

    def __post_init__(self):
        require_choice("finetune.task", self.task, TASKS)
        require_choice("finetune.multi_label_loss", self.multi_label_loss, MULTI_LABEL_LOSSES)
        require_positive(self, "max_seq_length", "condition_size")
        require_probability(self, "classifier_dropout")
        if self.from_scratch and not self.init:
            raise ValueError("finetune.from_scratch takes the model config and tokenizer of "
                             "--init: pass --init=PATH, or give the experiment a `model`.")
        if not self.train_file and not self.tasks:
            raise ValueError("finetune.train_file is empty: pass --train_file=PATH (TSV with "
                             "a header, JSONL or tfds:NAME/split).")
        self.adversarial = check_adversarial(self.adversarial, "finetune.adversarial")
        for i, spec in enumerate(self.tasks):
            check_keys_in(spec, TASK_FIELDS, f"finetune.tasks[{i}]")
            if not spec.get("name"):
                raise ValueError(f"finetune.tasks[{i}] has no `name`: give each task a name.")
            require_choice(f"finetune.tasks[{i}].task", spec.get("task", self.task), TASKS)
        names = [spec["name"] for spec in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"finetune.tasks repeats a name: {names}. Give each task its own.")
        if len(self.tasks) == 1:
            raise ValueError("finetune.tasks has one task: put its fields in the `finetune` "
                             "section itself (tasks are for two or more).")
        from pretraining.finetune.metrics import METRICS  # NumPy only
        for spec in self.task_specs():
            allowed = (*METRICS[spec["task"]], "loss")
            require_choice(f"finetune.select_by (task {spec['name']!r}, {spec['task']})",
                           self.metric(spec), allowed)

    def task_specs(self) -> list[dict]:
        """Every task's data fields (the section's own for a single task)."""
        base = {name: getattr(self, name) for name in TASK_FIELDS
                if name not in ("name", "weight")}
        if not self.tasks:
            return [{**base, "name": "task", "weight": 0.0}]
        return [{**base, "weight": 0.0, **spec} for spec in self.tasks]

    def metric(self, spec: dict) -> str:
        return spec.get("select_by") or self.select_by or SELECT_BY[spec["task"]]


def check_keys_in(data: dict, allowed, where: str) -> None:
    if not isinstance(data, dict):
        raise TypeError(f"`{where}` must be a JSON object. Received: {data!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown key(s) in `{where}`: {unknown}. Allowed keys: "
                         f"{sorted(allowed)}.")


@dataclasses.dataclass
class FinetuneExperiment(Config):
    """A fine-tuning experiment.

    Args:
        finetune: `FinetuneConfig`. Data, task, head, init. Required.
        model: `BertConfig` or None. None: `finetune.init`'s. Defaults to None.
        optimizer: `OptimizerConfig`. With fine-tuning's defaults (module
            docstring). Defaults to those.
        train: `TrainConfig`. Steps, batch, cadences. Defaults to its defaults.
        description: str. How to run it and on what. Defaults to "".
    """

    _section = "experiment"

    finetune: FinetuneConfig
    model: BertConfig | None = None
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    description: str = ""

    _SECTIONS = {"model": BertConfig, "optimizer": OptimizerConfig, "train": TrainConfig,
                 "finetune": FinetuneConfig}

    @classmethod
    def from_json(cls, path: str, **kwargs):
        from pretraining import configs
        path = configs.find("finetune", path)
        return super().from_json(path, base_dir=os.path.dirname(os.path.abspath(path)),
                                 **kwargs)

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None, tolerated=frozenset(),
                  overrides=(), base_dir: str | None = None):
        check_keys(cls, data, "experiment")
        data = json.loads(json.dumps(data))
        data.setdefault("finetune", {})
        if isinstance(data.get("model"), str):
            from pretraining import configs
            with open(configs.find("models", data["model"], base_dir), encoding="utf-8") as f:
                data["model"] = json.load(f)
        for section in [data["finetune"], *(data["finetune"].get("tasks") or [])]:
            for field in PATH_FIELDS:
                if isinstance(section, dict) and isinstance(section.get(field), str):
                    section[field] = resolve_data_path(section[field], base_dir)
        for item in overrides:
            if item.startswith("finetune."):
                _apply_finetune_override(data, item)
            else:  # model, optimizer, train: the pretraining experiment's rules
                _apply_override(data, item)
        optimizer = data.setdefault("optimizer", {})
        for name, value in FINETUNE_OPTIMIZER_DEFAULTS.items():
            optimizer.setdefault(name, value)
        steps = data.get("train", {}).get("steps", TrainConfig.steps)
        if isinstance(steps, int):
            optimizer.setdefault("warmup_steps", int(round(WARMUP_FRACTION * steps)))
        kwargs = {}
        for name, value in data.items():
            if name in cls._SECTIONS:
                kwargs[name] = None if value is None else cls._SECTIONS[name].from_dict(
                    value, name)
            else:
                kwargs[name] = coerce(value, str, name)
        return cls(**kwargs)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.model is None:
            out.pop("model")
        return out


def resolve_data_path(value: str, base_dir: str | None = None) -> str:
    """`resolve_path`, but a TFDS name (`tfds:NAME[:SPLIT]`) is kept as is."""
    return value if value.startswith("tfds:") else resolve_path(value, base_dir)


def _apply_finetune_override(data: dict, item: str) -> None:
    """`finetune.field=value`: strings as given, other types as JSON
    (`finetune.labels=["a","b"]`, `finetune.from_scratch=true`)."""
    key, _, raw = item.partition("=")
    field = key.split(".", 1)[1]
    hints = typing.get_type_hints(FinetuneConfig)
    if "=" not in item or field not in hints or field.startswith("_"):
        raise ValueError(f"--override {item!r}: `finetune` has no field {field!r}. "
                         f"Fields: {sorted(k for k in hints if not k.startswith('_'))}.")
    value = raw
    if hints[field] is not str:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"--override {item!r}: finetune.{field} must be JSON of type "
                             f"{hints[field].__name__}. Received: {raw!r}") from None
    elif field in PATH_FIELDS:
        value = resolve_data_path(raw)  # typed on the command line: the current directory
    data["finetune"][field] = value
