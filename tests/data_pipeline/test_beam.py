"""The data build on Apache Beam (`--runner`) writes the local builder's
bytes: every shard and the manifest, for mlm static + NSP, mlm dynamic,
seq2seq and lm with an eval split, on a local directory and on `ram://`
(TensorFlow's in-memory file system, standing in for `gs://`). A failing unit
leaves no manifest; a second build into a directory is refused without
`overwrite`.

Apache Beam needs protobuf < 7: these tests run in `make test-beam`'s venv
and skip, saying so, elsewhere.
"""

import os
import subprocess
import sys
import uuid

import pytest
import tensorflow as tf

beam = pytest.importorskip(
    "apache_beam", reason="apache-beam is not installed (make test-beam "
    "installs it in .venv-beam: it needs protobuf < 7)")

# pylint: disable=wrong-import-position
from data_pipeline import builder
from data_pipeline import features
from data_pipeline import sources
from data_pipeline import tasks
from tests.data_pipeline import test_build_bytes

# Two workers in this process: fast, and the same code as multi_processing.
_DIRECT = ("--direct_num_workers=2", "--direct_running_mode=multi_threading")
_BUILD = dict(seed=7, num_shards=3, eval_fraction=0.2, docs_per_unit=16)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return test_build_bytes.write_inputs(
        str(tmp_path_factory.mktemp("beam_inputs")))


def _files(directory):
    return {name: tf.io.gfile.GFile(os.path.join(directory, name), "rb").read()
            for name in tf.io.gfile.listdir(directory)}


def _build(inputs, output_dir, case, **kwargs):
    return builder.build(inputs["text"], inputs["vocab"], output_dir,
                         task=tasks.TaskConfig(**test_build_bytes.CASES[case]),
                         source=sources.SourceConfig(), **{**_BUILD, **kwargs})


def _assert_same_bytes(a, b):
    for split in ("train", "eval"):
        files_a = _files(os.path.join(a, split))
        files_b = _files(os.path.join(b, split))
        assert sorted(files_a) == sorted(files_b)
        for name, data in files_a.items():
            if name != features.MANIFEST_FILE:
                assert files_b[name] == data, (split, name)
        manifest_a = features.Manifest.read(os.path.join(a, split))
        manifest_b = features.Manifest.read(os.path.join(b, split))
        assert manifest_a.num_examples > 0
        assert manifest_a == manifest_b


@pytest.mark.parametrize("case", ["mlm_static_nsp", "mlm_dynamic", "seq2seq",
                                  "lm"])
def test_direct_runner_writes_the_local_builders_bytes(case, inputs, tmp_path):
    local, beamed = str(tmp_path / "local"), str(tmp_path / "beam")
    _build(inputs, local, case, num_workers=2)
    _build(inputs, beamed, case, runner="DirectRunner", beam_options=_DIRECT)
    _assert_same_bytes(local, beamed)
    # and the pinned bytes: the Beam build is the local build of today
    for split in ("train", "eval"):
        got = test_build_bytes.digest(os.path.join(beamed, split))
        assert got == test_build_bytes.EXPECTED[case][split]


def test_direct_runner_to_a_url(inputs, tmp_path):
    remote = f"ram://beam-{uuid.uuid4().hex}/data"
    local = str(tmp_path / "local")
    _build(inputs, remote, "mlm_static", runner="DirectRunner",
           beam_options=_DIRECT)
    _build(inputs, local, "mlm_static")
    assert sorted(tf.io.gfile.listdir(remote)) == ["eval", "train"]  # no .tmp-*
    _assert_same_bytes(local, remote)


def test_failing_unit_leaves_no_manifest(inputs, tmp_path, monkeypatch):
    run_unit = builder.run_unit

    def failing(plan, tokenizer, documents, first, unit):
        if unit == 2:
            raise RuntimeError("injected failure in unit 2")
        return run_unit(plan, tokenizer, documents, first, unit)

    monkeypatch.setattr(builder, "run_unit", failing)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as raised:
        _build(inputs, str(out), "lm", runner="DirectRunner",
               beam_options=_DIRECT)
    message = str(raised.value)
    assert "\n" not in message
    assert "DirectRunner" in message and "injected failure in unit 2" in message
    assert "No manifest was written" in message and str(out) in message
    assert not out.exists() or os.listdir(out) == []  # .tmp-* removed too


def test_rebuild_refused_without_overwrite(inputs, tmp_path):
    out = str(tmp_path / "out")
    _build(inputs, out, "lm", runner="DirectRunner", beam_options=_DIRECT)
    with pytest.raises(ValueError, match="--overwrite"):
        _build(inputs, out, "lm", runner="DirectRunner", beam_options=_DIRECT)
    manifests = _build(inputs, out, "lm", runner="DirectRunner",
                       beam_options=_DIRECT, overwrite=True, seed=8)
    assert features.Manifest.read(os.path.join(out, "train")).seed == 8
    assert manifests["train"].seed == 8


def test_bad_runner_or_option_is_one_line(inputs, tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ValueError, match="--beam_option.*project=p"):
        builder.build(inputs["text"], inputs["vocab"], str(out),
                      runner="DirectRunner", beam_options=("project=p",))
    with pytest.raises(ValueError, match="--runner must be one of"):
        builder.build(inputs["text"], inputs["vocab"], str(out),
                      runner="LocalRunner")
    assert not out.exists()


@pytest.mark.extended
def test_cli_multi_processing_with_options_after_dashes(inputs, tmp_path):
    """The CLI on DirectRunner in multi_processing mode (2 worker
    processes), options after `--`: the local CLI build's bytes."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    common = ["--input", inputs["text"], "--tokenizer", inputs["vocab"],
              "--max_seq_length=32", "--max_predictions_per_seq=5",
              "--num_shards=3", "--eval_fraction=0.2", "--seed=7",
              "--docs_per_unit=16", "--next_sentence"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=repo)
    for name, extra in (("local", ["--num_workers=2"]),
                        ("beam", ["--runner=DirectRunner", "--",
                                  "--direct_num_workers=2",
                                  "--direct_running_mode=multi_processing"])):
        done = subprocess.run(
            [sys.executable, "-m", "data_pipeline.build", *common,
             f"--output_dir={tmp_path / name}", *extra], cwd=repo, env=env,
            capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_bytes(str(tmp_path / "local"), str(tmp_path / "beam"))
