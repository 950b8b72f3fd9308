"""The configs that ship with the package: `models/*.json` (Google's
`bert_config.json` fields) and `experiments/*.json` (model + data + optimizer +
train).

Command-line flags and experiment fields that take a config accept either a
path or a shipped name: `--experiment=demo` is this folder's
`experiments/demo.json`, `"model": "bert_base"` its `models/bert_base.json`.
A path that exists wins over a shipped name.
"""

import os

SHIPPED_DIR = os.path.dirname(os.path.abspath(__file__))
KINDS = ("models", "experiments", "finetune")


def shipped_names(kind: str) -> list[str]:
    """The names of the shipped configs of one kind (`models`, `experiments`)."""
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {list(KINDS)}. Received: kind={kind!r}")
    folder = os.path.join(SHIPPED_DIR, kind)
    return sorted(name[:-len(".json")] for name in os.listdir(folder) if name.endswith(".json"))


def shipped_path(kind: str, name: str) -> str | None:
    """The file of shipped config `name` (with or without `.json`), or None."""
    if not name or "/" in name or os.sep in name:
        return None
    stem = name[:-len(".json")] if name.endswith(".json") else name
    return (os.path.join(SHIPPED_DIR, kind, stem + ".json")
            if stem in shipped_names(kind) else None)


def find(kind: str, value: str, base_dir: str | None = None) -> str:
    """The file a flag or field names: a path (relative ones against `base_dir`,
    or the current directory) when it exists, else a shipped config of that
    name. Neither: a ValueError naming the value, where it looked, and the
    shipped names."""
    from pretraining.config import resolve_path  # the one rule for relative paths
    path = resolve_path(value, base_dir)
    if os.path.exists(path) or "://" in value:
        return path
    shipped = shipped_path(kind, value)
    if shipped:
        return shipped
    singular = kind[:-1]
    raise ValueError(
        f"No {singular} config {value!r}: {path} does not exist and it is not a shipped "
        f"{singular} name. Give a path to a JSON file (relative paths inside an experiment "
        f"are taken from the experiment file's directory, or from the current directory "
        f"when they start with ./) or one of: {', '.join(shipped_names(kind))}.")
