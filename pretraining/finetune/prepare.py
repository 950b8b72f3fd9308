"""From a `FinetuneExperiment` to what the trainer needs: the model config
and encoder of `--init`, the tokenizer, the label list and the encoded
splits (`data_pipeline.labelled`)."""

import dataclasses
import os

from absl import logging

from data_pipeline import labelled
from pretraining.finetune.config import FinetuneExperiment
from pretraining.finetune.init_source import InitSource, read_init
from pretraining.finetune.trainer import TaskData


@dataclasses.dataclass
class Prepared:
    """A resolved experiment, its `--init` (or None) and its data.

    Args:
        experiment: `FinetuneExperiment`, `model` set. Required.
        init: `InitSource` or None. Required.
        task: `TaskData`, or a list of them (several tasks). Required.
    """

    experiment: FinetuneExperiment
    init: InitSource | None
    task: TaskData | list


def resolve_model(experiment: FinetuneExperiment) -> tuple[FinetuneExperiment, InitSource | None]:
    """The experiment with its `model` (the experiment's, else `--init`'s)."""
    finetune = experiment.finetune
    init = read_init(finetune.init) if finetune.init else None
    if experiment.model is None:
        if init is None:
            raise ValueError("No model: pass --init=PATH (our run, a Google checkpoint or a "
                             "Hugging Face directory), or give the experiment a `model`.")
        experiment = dataclasses.replace(experiment, model=init.config)
    tasks = len(finetune.tasks)
    if tasks > 1 and experiment.model.condition_num_classes != tasks:
        # The task id conditions every LayerNorm (zero-initialised W_γ, W_β).
        experiment = dataclasses.replace(experiment, model=dataclasses.replace(
            experiment.model, condition_size=finetune.condition_size,
            condition_num_classes=tasks))
    return experiment, init


def tokenizer_path(experiment: FinetuneExperiment, init: InitSource | None) -> str:
    """`finetune.tokenizer`, else the one found with `--init`."""
    path = experiment.finetune.tokenizer or (init.tokenizer if init is not None else "")
    if not path:
        raise ValueError("No tokenizer: --init has none beside it (vocab.txt, a SentencePiece "
                         "model, or the run's data_manifest.json); pass --tokenizer=FILE.")
    if not os.path.isfile(path):
        raise ValueError(f"--tokenizer={path!r} does not exist: pass a SentencePiece .model "
                         "or a WordPiece vocab.txt.")
    return path


def label_spec(spec: dict, train, model_dir: str) -> labelled.LabelSpec:
    """The label list: given, else the run's `labels.json` (a resume; ""
    for none), else the sorted labels of the train split."""
    if spec["labels"]:
        return labelled.LabelSpec(spec["task"], tuple(spec["labels"]))
    saved = os.path.join(model_dir, labelled.LABELS_FILE)
    if model_dir and os.path.isfile(saved):
        return labelled.LabelSpec.load(saved)
    return labelled.LabelSpec.from_examples(train)


def load_data(experiment: FinetuneExperiment, init: InitSource | None,
              model_dir: str) -> list[TaskData]:
    """Reads, labels and tokenizes every task's train, eval and test splits."""
    from data_pipeline.tokenization import load_tokenizer
    path = tokenizer_path(experiment, init)
    tokenizer = load_tokenizer(path)
    if tokenizer.vocab_size > experiment.model.vocab_size:
        raise ValueError(f"--tokenizer={path!r} has {tokenizer.vocab_size} tokens, more than "
                         f"the model's vocab_size={experiment.model.vocab_size}: use the "
                         "tokenizer the checkpoint was trained with.")
    specs = experiment.finetune.task_specs()
    return [load_task(spec, tokenizer, experiment.finetune,
                      model_dir if len(specs) == 1 else "") for spec in specs]


def load_task(spec: dict, tokenizer, finetune, model_dir: str) -> TaskData:
    """One task's splits (`spec`: its fields, `FinetuneConfig.task_specs`)."""
    read = labelled.ReadConfig(
        task=spec["task"], text_field=spec["text_field"],
        text_pair_field=spec["text_pair_field"] or None, label_field=spec["label_field"],
        label_separator=spec["label_separator"] or None,
        tfds_data_dir=finetune.tfds_data_dir or None)
    if not spec["train_file"]:
        raise ValueError(f"Task {spec['name']!r} has no train_file: give each task of "
                         "finetune.tasks its train_file.")
    train = labelled.read_examples(spec["train_file"], read)
    labels = label_spec(spec, train, model_dir)
    length = finetune.max_seq_length
    arrays = {"train": labelled.encode(train, tokenizer, labels, length)}
    logging.info("Task %s: %d train examples of %s; %d labels.", spec["name"], len(train),
                 spec["train_file"], len(labels.labels))
    test_texts = None
    for split, required in (("eval", True), ("test", False)):
        name = spec[f"{split}_file"]
        if not name:
            arrays[split] = None
            continue
        examples = labelled.read_examples(name, read, require_labels=required)
        arrays[split] = labelled.encode(examples, tokenizer, labels, length)
        if split == "test":
            test_texts = examples.texts
    return TaskData(spec["name"], labels, arrays["train"], arrays["eval"], arrays["test"],
                    test_texts)


def prepare(experiment: FinetuneExperiment, model_dir: str) -> Prepared:
    """The model config, `--init` and data of `experiment`."""
    experiment, init = resolve_model(experiment)
    tasks = load_data(experiment, init, model_dir)
    return Prepared(experiment, init, tasks if len(tasks) > 1 else tasks[0])
