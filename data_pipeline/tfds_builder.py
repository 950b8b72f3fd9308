"""A local TFDS builder: a folder of `.txt` files, one document per file.

    prepare_text_folder("my_texts/", "tfds_data/")
    python -m data_pipeline.build --input_format=tfds --input=text_folder \
        --tfds_data_dir=tfds_data/ ...

Building and loading are offline (`manual_dir`, `download=False`).
"""

import os

import tensorflow_datasets as tfds


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
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(), "file": tfds.features.Text()}),
            supervised_keys=None)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(str(dl_manager.manual_dir))}

    def _generate_examples(self, folder):
        paths = []
        for root, _, files in os.walk(folder):
            paths.extend(os.path.join(root, f) for f in files
                         if f.endswith(".txt"))
        for path in sorted(paths):
            rel = os.path.relpath(path, folder)
            with open(path, encoding="utf-8") as f:
                yield rel, {"text": f.read(), "file": rel}


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
