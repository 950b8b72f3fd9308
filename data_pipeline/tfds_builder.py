"""A local TFDS builder: `.txt` files, one document per file.

    prepare_text_folder("my_texts/", "tfds_data/")
    python -m data_pipeline.build --input_format=tfds --input=text_folder \
        --tfds_data_dir=tfds_data/ ...

or, from globs and under a name of one's own (`python -m
data_pipeline.prepare_tfds`, `prepare_text_files`):

    python -m data_pipeline.prepare_tfds --input='corpus/**/*.txt' \
        --name=my_corpus --data_dir=tfds_data/
    python -m data_pipeline.build --input_format=tfds --input=my_corpus \
        --tfds_data_dir=tfds_data/ ...

Building and loading are offline (`manual_dir`, `download=False`); a named
dataset is read back from its prepared files, without this module.
"""

import os
import re
import types

import tensorflow_datasets as tfds

from data_pipeline import conditions
from data_pipeline import corpus


class TextFolder(tfds.core.GeneratorBasedBuilder):
    """Every `*.txt` file under `manual_dir` (sorted by relative path) is one
    example: `text` (the file content) and `file` (its relative path)."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder of .txt files as manual_dir."
    # Nothing is downloaded, so no checksums file: without these TFDS looks
    # for one beside this module through `importlib_resources`, which
    # tensorflow-datasets 4.9.10 uses without depending on it.
    url_infos = None
    _checksums_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"text": tfds.features.Text(), "file": tfds.features.Text()}
        if self._labels:
            features["label"] = tfds.features.ClassLabel(
                names=conditions.sort_labels(self._labels.values()))
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None)

    def __init__(self, *, files=None, labels=None, **kwargs):
        """`files`: the paths to read (under `manual_dir`) instead of every
        `*.txt` file there. Defaults to None. `labels`: dict of each file's
        class label (a `label` ClassLabel feature, names sorted). Defaults
        to None (no `label`)."""
        self._files = files
        self._labels = labels
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(str(dl_manager.manual_dir))}

    def _generate_examples(self, folder):
        paths = self._files
        if paths is None:
            paths = []
            for root, _, files in os.walk(folder):
                paths.extend(os.path.join(root, f) for f in files
                             if f.endswith(".txt"))
        for path in sorted(paths):
            rel = os.path.relpath(path, folder)
            with open(path, encoding="utf-8") as f:
                example = {"text": f.read(), "file": rel}
            if self._labels:
                example["label"] = self._labels[path]
            yield rel, example


def prepare_text_folder(folder: str, data_dir: str) -> str:
    """Builds the `text_folder` dataset from `folder` into `data_dir`.

    Args:
        folder: str. Directory of `.txt` files.
        data_dir: str. TFDS data directory to write.

    Returns:
        The dataset name to load ("text_folder").

    Raises:
        ValueError: `folder` is missing or has no `.txt` file.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"Text folder {folder!r} does not exist.")
    if not any(f.endswith(".txt") for _, _, fs in os.walk(folder) for f in fs):
        raise ValueError(f"Text folder {folder!r} holds no .txt file.")
    builder = TextFolder(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=folder))
    return TextFolder.name


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_named = {}


def _builder_class(name: str):
    """`TextFolder` under the dataset name `name` (made once, unregistered:
    TFDS reads it back from its files)."""
    if name == TextFolder.name:
        return TextFolder
    if name not in _named:
        _named[name] = types.new_class(
            "".join(part.title() for part in name.split("_")), (TextFolder,),
            {"skip_registration": True},
            lambda body: body.update(name=name, __module__=__name__))
    return _named[name]


def prepare_text_files(patterns, data_dir: str | None,
                       name: str = "text_folder",
                       label_from_path: str | None = None) -> tuple[str, int]:
    """Builds a TFDS dataset `name` of the files matching `patterns`, one
    example (`text`, `file`, and `label` with `label_from_path`) per file.

    Args:
        patterns: str | list[str]. Globs, comma-separated (`**` recurses).
        data_dir: str | None. TFDS data directory; None: TFDS's default
            (~/tensorflow_datasets).
        name: str. Dataset name, snake_case. Defaults to "text_folder".
        label_from_path: str | None. Regex with one capture group, searched
            in each path as the globs list it: a `label` ClassLabel feature
            (names sorted; `build --condition_field=label` reads it).
            Defaults to None.

    Returns:
        (the dataset name, the number of files).

    Raises:
        ValueError: a bad name, a pattern that matches no file, or a regex
            without one capture group or not matching a file.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"--name must be a snake_case dataset name (a-z, 0-9, "
                         f"_; a letter first). Received: name={name!r}")
    listed = corpus.list_files(patterns, recursive=True)
    files = [os.path.abspath(f) for f in listed]
    labels = None
    if label_from_path:
        labels = {path: conditions.path_label(
            label_from_path, f, flag="--label_from_path")
            for path, f in zip(files, listed)}
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    builder = _builder_class(name)(data_dir=data_dir, files=files,
                                   labels=labels)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=root))
    return name, len(files)
