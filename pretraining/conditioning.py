"""Conditional LayerNorm end to end: what the records, the model, its
checkpoints and the generation flags must agree on.

A records split's manifest describes its `condition` (`None`, or
`{"kind": "class", "size": K, "labels": [...]}`, or
`{"kind": "vector", "size": n, "labels": []}`); a model config matches it
with `condition_num_classes = K` (and `condition_size` the width of the
learned class embedding), or `condition_size = n` and no classes. The
functions here check that agreement, build the "shuffled" condition of an
evaluation that shows whether a model uses its condition, turn the
generation flags into a condition array, and tell a conditioned checkpoint
from a plain one.
"""

import dataclasses
import json

# Variable-path parts that only a Conditional LayerNorm model has: W_γ, W_β of
# every LayerNorm, the optional Dense and the class embedding.
CONDITION_VARIABLES = ("gamma_dense", "beta_dense", "condition_dense", "condition_embeddings")
EVAL_CONDITIONS = ("true", "shuffled")


def describe(config) -> str:
    """The model's condition in the manifest's words, for messages."""
    if config.condition_num_classes:
        return f"class condition with condition_num_classes={config.condition_num_classes}"
    if config.condition_size:
        return f"vector condition with condition_size={config.condition_size}"
    return "no condition (condition_size=0)"


def manifest_condition(manifest):
    """The manifest's `condition` (None when the records carry none)."""
    return getattr(manifest, "condition", None) or None


def check_manifest(manifest, config) -> list[str]:
    """The disagreements between the records' condition and the model's
    `BertConfig`, each naming both values ([] when they agree)."""
    condition = manifest_condition(manifest)
    model = describe(config)
    if condition is None:
        if config.condition_size:
            return [f"condition: data has none, model has a {model} (build the records with "
                    "a condition, or set model.condition_size=0)"]
        return []
    kind, size = condition.get("kind"), condition.get("size")
    data = f"{kind} condition of size {size}"
    if not config.condition_size:
        fix = (f"model.condition_num_classes={size} and model.condition_size=<embedding width>"
               if kind == "class" else f"model.condition_size={size}")
        return [f"condition: data has a {data}, model has {model} (set {fix})"]
    if kind == "class" and config.condition_num_classes != size:
        return [f"condition: data has a class condition with {size} classes, model has a "
                f"{model} (set model.condition_num_classes={size})"]
    if kind == "vector" and (config.condition_num_classes or config.condition_size != size):
        return [f"condition: data has a vector condition of size {size}, model has a {model} "
                f"(set model.condition_size={size} and model.condition_num_classes=0)"]
    return []


def unconditioned(config):
    """`config` without Conditional LayerNorm (the model a plain checkpoint holds)."""
    return dataclasses.replace(config, condition_size=0, condition_hidden_size=0,
                               condition_num_classes=0)


def is_condition_variable(path: str) -> bool:
    """Whether a variable path (or checkpoint name) is a Conditional LayerNorm weight."""
    return any(part in path.split("/") for part in CONDITION_VARIABLES)


def is_conditioned_checkpoint(prefix: str) -> bool:
    """Whether the checkpoint at `prefix` holds Conditional LayerNorm weights.

    Our checkpoints are object graphs: a variable saved through the
    optimizer first is named by its slot there (`optimizer/_trainable_variables/7`),
    so the graph's edges (`gamma_dense`, `condition_embeddings`, ...) are read
    rather than the variable names; name-based (Google) checkpoints by name."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    if "_CHECKPOINTABLE_OBJECT_GRAPH" not in names:
        return any(is_condition_variable(name) for name in names)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return any(child.local_name in CONDITION_VARIABLES
               for node in graph.nodes for child in node.children)


def shuffled(batch: dict, config) -> dict:
    """`batch` with every condition replaced by another: class `c` by
    `(c + 1) mod condition_num_classes`, a vector by the next row's (the rows
    rolled by one; with a single row, its negation). Deterministic, and never
    the true condition (for classes; for vectors unless two rows are equal)."""
    from keras import ops

    condition = batch["condition"]
    if config.condition_num_classes:
        other = (ops.cast(condition, "int32") + 1) % config.condition_num_classes
    elif condition.shape[0] == 1:
        other = -condition
    else:
        other = ops.roll(condition, 1, axis=0)
    return {**batch, "condition": ops.cast(other, condition.dtype)}


def check_eval_condition(value: str, config) -> None:
    """Refuses an `--eval_condition` the run cannot evaluate with."""
    if value not in EVAL_CONDITIONS:
        raise ValueError(f"--eval_condition must be one of {list(EVAL_CONDITIONS)}. "
                         f"Received: {value!r}")
    if value == "shuffled" and not config.condition_size:
        raise ValueError("--eval_condition=shuffled needs a conditioned run; this run's model "
                         "has condition_size=0: drop the flag.")


def generation_conditions(config, manifest_condition_value, labels_flag: str,
                          vector_flag: str):
    """The conditions to generate with, from the generate CLI's flags.

    Args:
        config: `BertConfig` of the run.
        manifest_condition_value: dict or None. The run's records' condition
            (from its `data_manifest.json`): the class labels.
        labels_flag: str. `--condition`: comma-separated class labels.
        vector_flag: str. `--condition_vector`: a JSON list of floats, or a
            list of such lists.

    Returns:
        `(names, arrays)`: one display name and one condition array
        (`(1, 1)` int class id or `(1, condition_size)` float) per block, or
        `([None], [None])` for an unconditioned run.
    """
    import numpy as np

    if not config.condition_size:
        if labels_flag or vector_flag:
            raise ValueError("--condition/--condition_vector need a conditioned run; this "
                             "run's model has condition_size=0: drop the flag.")
        return [None], [None]
    labels = list((manifest_condition_value or {}).get("labels") or [])
    if config.condition_num_classes:
        if vector_flag:
            raise ValueError(f"--condition_vector is for a vector-conditioned run; this run "
                             f"has a {describe(config)}: use --condition=LABEL "
                             f"(labels: {','.join(map(str, labels))}).")
        if not labels_flag:
            raise ValueError(f"This run was trained with a {describe(config)}: give "
                             f"--condition=LABEL[,LABEL...] (labels: "
                             f"{','.join(map(str, labels))}).")
        names = [name.strip() for name in labels_flag.split(",") if name.strip()]
        ids = []
        for name in names:
            if name in map(str, labels):
                ids.append([str(label) for label in labels].index(name))
            elif not labels and name.isdigit() and int(name) < config.condition_num_classes:
                ids.append(int(name))
            else:
                raise ValueError(f"--condition={name!r} is not among the run's labels: "
                                 f"{','.join(map(str, labels)) or 'none recorded'}.")
        return names, [np.array([[i]], "int32") for i in ids]
    if labels_flag:
        raise ValueError(f"--condition=LABEL is for a class-conditioned run; this run has a "
                         f"{describe(config)}: use --condition_vector=JSON.")
    if not vector_flag:
        raise ValueError(f"This run was trained with a {describe(config)}: give "
                         f"--condition_vector=[{config.condition_size} floats].")
    try:
        value = json.loads(vector_flag)
        vectors = np.asarray(value if value and isinstance(value[0], list) else [value],
                             "float32")
    except (json.JSONDecodeError, TypeError, ValueError, IndexError, KeyError):
        raise ValueError(f"--condition_vector must be a JSON list of {config.condition_size} "
                         f"numbers (or a list of such lists). Received: {vector_flag!r}") from None
    if vectors.ndim != 2 or vectors.shape[1] != config.condition_size:
        raise ValueError(f"--condition_vector must hold {config.condition_size} numbers per "
                         f"vector (the run's condition_size). Received: {vector_flag!r}")
    return [json.dumps(v.tolist()) for v in vectors], [v[None] for v in vectors]
