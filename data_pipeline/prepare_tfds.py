r"""Prepares a local TFDS dataset from text files, one document per file.

Usage:
  python -m data_pipeline.prepare_tfds --input='corpus/**/*.txt' \
      --name=my_corpus [--data_dir=tfds_data/] \
      [--label_from_path='([^/]+)/[^/]+$']
  python -m data_pipeline.build --input_format=tfds --input=my_corpus \
      [--tfds_data_dir=tfds_data/] ...

Each matching file is one example: `text` (its content) and `file` (its path
relative to the files' common folder), in the `train` split. `**` recurses;
comma-separate several globs. Nothing is downloaded. With --label_from_path,
each example also has `label`, a ClassLabel of the regex's capture group in
the file's path (names sorted): `build --condition_field=label` conditions
the records on it.

Exit status: 0 done; 2 bad flag or input (one line on stderr).
"""

from absl import app
from absl import flags

from data_pipeline import cli

# `tfds_builder` imports TensorFlow Datasets: imported in main, so that
# `--help` answers at once.


def define_flags() -> None:
    """Defines this CLI's flags (only when run as a program)."""
    flags.DEFINE_string("input", None, "Comma-separated globs of text files "
                        "(** recurses).", required=True)
    flags.DEFINE_string("name", None, "Dataset name (snake_case), the "
                        "--input of `build --input_format=tfds`.",
                        required=True)
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: "
                        "TFDS's, ~/tensorflow_datasets); build's "
                        "--tfds_data_dir.")
    flags.DEFINE_string("label_from_path", None, "Regex with one capture "
                        "group, searched in each file's path: a `label` "
                        "ClassLabel feature (e.g. '([^/]+)/[^/]+$': the "
                        "file's folder).")


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from data_pipeline import tfds_builder  # pylint: disable=import-outside-toplevel
    name, count = tfds_builder.prepare_text_files(
        FLAGS.input, FLAGS.data_dir, FLAGS.name, FLAGS.label_from_path)
    where = f" --tfds_data_dir={FLAGS.data_dir}" if FLAGS.data_dir else ""
    print(f"{name}: {count} file(s); build with --input_format=tfds "
          f"--input={name}{where}")


if __name__ == "__main__":
    cli.run(main, define_flags)
