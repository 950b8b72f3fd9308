"""Fault injection on the other command-line tools: config values, Hugging
Face files, generation flags, checkpoints that do not fit their config,
tokenizer corpora, outputs that are files, a full disk and a killed build.

Each case runs the tool's library entry (the function its `main` calls)
through the CLI's `run_or_exit` in process and asserts exit status 2, one
line on stderr naming the file/field/flag, and the output left unchanged.
Two real processes check `build` and `generate` end to end.
"""

import json
import os
import shutil
import subprocess
import sys
import types

import pytest

from data_pipeline import atomic, builder, tasks, tokenization
from data_pipeline import cli as data_cli
from data_pipeline import train_tokenizer
from pretraining import cli, convert, generate
from pretraining.config import BertConfig, ExperimentConfig
from tests.conftest import REPO_ROOT
from tests.pretraining.test_convert_native import _trainer_run
from tests.reliability.test_data_faults import snapshot
from tests.reliability.tmpfs import small_tmpfs


def one_line(capsys, run_or_exit, fn, *args, **kwargs):
    """Runs `fn` through `run_or_exit`; asserts exit 2 and one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        run_or_exit(fn, *args, **kwargs)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def bert_config():
    return BertConfig.from_json(f"{REPO_ROOT}/configs/models/bert_test.json")


@pytest.fixture(scope="module")
def run_dir(bert_config, tmp_path_factory):
    """A run directory as the trainer leaves it (random weights, no training)."""
    path = tmp_path_factory.mktemp("run")
    _trainer_run(path, bert_config)
    return path


@pytest.fixture(scope="module")
def hf_dir(run_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("hf") / "model")
    convert.convert(str(run_dir), "native", out, "hf")
    return out


# ------------------------------------------------------------ config values
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_learning_rate_in_experiment_file(mlm_data, tmp_path, capsys, value):
    path = tmp_path / "exp.json"
    path.write_text('{"model": "bert_test", "data": {"train_dir": "%s"}, '
                    '"optimizer": {"learning_rate": %s}}' % (mlm_data["train_dir"], value))
    line = one_line(capsys, cli.run_or_exit, ExperimentConfig.from_json, str(path))
    assert str(path) in line and "learning_rate" in line and "finite" in line


@pytest.mark.parametrize("override", ["optimizer.learning_rate=nan",
                                      "optimizer.weight_decay=inf",
                                      "optimizer.clip_norm=nan",
                                      "model.hidden_dropout_prob=nan"])
def test_non_finite_float_override(mlm_data, capsys, override):
    data = {"model": "bert_test", "data": {"train_dir": mlm_data["train_dir"]}}
    line = one_line(capsys, cli.run_or_exit, ExperimentConfig.from_dict, data,
                    overrides=[override])
    field = override.split("=")[0].split(".")[1]
    assert field in line and "Traceback" not in line


# --------------------------------------------------- Hugging Face directories
def _damaged_copy(hf_dir, tmp_path):
    copy = str(tmp_path / "hf")
    shutil.copytree(hf_dir, copy)
    return copy, os.path.join(copy, "model.safetensors")


def _refuse_conversion(capsys, source, tmp_path):
    out = str(tmp_path / "out")
    line = one_line(capsys, cli.run_or_exit, convert.convert, source, "hf", out, "native")
    assert not os.path.exists(out)
    return line


@pytest.mark.parametrize("damage", ["truncated", "header", "not_safetensors"])
def test_damaged_safetensors(hf_dir, tmp_path, capsys, damage):
    copy, weights = _damaged_copy(hf_dir, tmp_path)
    data = open(weights, "rb").read()
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "header":
        data = data[:8] + b"{\xff\xfe" + data[11:]
    else:
        data = b"PK\x03\x04" + os.urandom(200)
    open(weights, "wb").write(data)
    before = snapshot(copy)
    line = _refuse_conversion(capsys, copy, tmp_path)
    assert weights in line and "safetensors" in line
    assert snapshot(copy) == before


@pytest.mark.parametrize("text", ['{"model_type": "bert", "hidden_size": ', "[1, 2]",
                                  '{"model_type": "bert", "hidden_size": "32"}'])
def test_malformed_hf_config(hf_dir, tmp_path, capsys, text):
    copy, _ = _damaged_copy(hf_dir, tmp_path)
    config = os.path.join(copy, "config.json")
    with open(config, "w", encoding="utf-8") as f:
        f.write(text)
    line = _refuse_conversion(capsys, copy, tmp_path)
    assert config in line


@pytest.mark.parametrize("target", ["../outside.safetensors", "/etc/passwd", ".."])
def test_index_pointing_outside_the_model_dir(hf_dir, tmp_path, capsys, target):
    copy, weights = _damaged_copy(hf_dir, tmp_path)
    shutil.move(weights, str(tmp_path / "outside.safetensors"))
    index = weights + ".index.json"
    with open(index, "w", encoding="utf-8") as f:
        json.dump({"metadata": {}, "weight_map": {"bert.pooler.dense.bias": target}}, f)
    line = _refuse_conversion(capsys, copy, tmp_path)
    assert index in line and repr(target) in line and "outside the model directory" in line


# ------------------------------------------------------------------- outputs
@pytest.mark.parametrize("output_format", ["hf", "google", "native"])
def test_convert_output_that_is_a_file(run_dir, tmp_path, capsys, output_format):
    out = tmp_path / "taken"
    out.write_text("keep me")
    line = one_line(capsys, cli.run_or_exit, convert.convert, str(run_dir), "native",
                    str(out), output_format)
    assert str(out) in line and "existing file" in line
    assert out.read_text() == "keep me"


def test_build_output_dir_that_is_a_file(mlm_data, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("keep me")
    line = one_line(capsys, data_cli.run_or_exit, builder.build, [mlm_data["corpus"]],
                    mlm_data["tokenizer"], str(out))
    assert str(out) in line and "existing file" in line and out.read_text() == "keep me"


# -------------------------------------------------- checkpoint vs its config
def _run_with_config(run_dir, tmp_path, **changes):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"].update(changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize("changes,expected", [
    ({"intermediate_size": 48}, ["bert/layer_0/intermediate/kernel", "(32, 64)", "(32, 48)"]),
    ({"num_hidden_layers": 1}, ["more encoder layers", "layer_1"]),
    ({"num_hidden_layers": 3}, ["not in the checkpoint", "bert/layer_2/"]),
])
def test_generate_refuses_checkpoint_of_another_architecture(
        run_dir, mlm_data, tmp_path, capsys, changes, expected):
    from pretraining.generation import GenerationConfig
    copy = _run_with_config(run_dir, tmp_path, **changes)
    before = snapshot(str(copy))
    line = one_line(capsys, cli.run_or_exit, generate.run, str(copy), mlm_data["tokenizer"],
                    ["Hello"], GenerationConfig(max_new_tokens=4))
    assert str(copy / "config.json") in line and "ckpt-7" in line
    for text in expected:
        assert text in line, line
    assert snapshot(str(copy)) == before


def test_convert_refuses_checkpoint_with_more_layers(run_dir, bert_config, tmp_path, capsys):
    small = tmp_path / "small.json"
    small.write_text(json.dumps(bert_config.to_dict() | {"num_hidden_layers": 1}))
    out = tmp_path / "out"
    line = one_line(capsys, cli.run_or_exit, convert.convert, str(run_dir), "native",
                    str(out), "hf", str(small))
    assert str(small) in line and "layer_1" in line and not out.exists()


# ---------------------------------------------------------------- generation
def test_generate_flags(run_dir, mlm_data, capsys):
    from pretraining.generation import GenerationConfig
    line = one_line(capsys, cli.run_or_exit, generate.run, str(run_dir),
                    mlm_data["tokenizer"], [], GenerationConfig())
    assert "--prompt" in line
    tokenizer = tokenization.load_tokenizer(mlm_data["tokenizer"])
    length = 64
    for max_new_tokens in (length, length - 1, length + 5):
        line = one_line(capsys, cli.run_or_exit, generate.context_ids, tokenizer, "Hello",
                        "lm", length, max_new_tokens)
        assert f"--max_new_tokens={max_new_tokens}" in line and f"{length}" in line


@pytest.mark.parametrize("task", ["lm", "seq2seq"])
def test_long_prompt_keeps_its_tail_and_says_how_many_dropped(mlm_data, caplog, task):
    tokenizer = tokenization.load_tokenizer(mlm_data["tokenizer"])
    prompt = " ".join(["Return the value of the attribute"] * 20)
    ids = tokenizer.encode(prompt)
    length, new = 32, 8
    specials = 1 if task == "lm" else 2
    room = length - new - specials
    assert len(ids) > room
    context = generate.context_ids(tokenizer, prompt, task, length, new)
    assert len(context) + new == length
    body = context[1:] if task == "lm" else context[1:-1]
    assert body == ids[-room:]  # the tail, unchanged
    assert f"dropped {len(ids) - room}" in caplog.text and f"kept its last {room}" in caplog.text
    short = generate.context_ids(tokenizer, "Return", task, length, new)
    assert len(short) == len(tokenizer.encode("Return")) + specials


# ------------------------------------------------------------ train_tokenizer
def _tokenizer_flags(inputs, output):
    return types.SimpleNamespace(input=inputs, vocab_size=50, output=output,
                                 model_type="unigram", character_coverage=0.9999,
                                 input_sentence_size=1000, seed=0)


@pytest.mark.parametrize("content,expected", [
    (b"\n\n   \n", "holds no text"),
    ("caf\u00e9 au lait\n".encode("utf-8") * 5 + "na\u00efve\n".encode("latin-1"),
     "not UTF-8: line 6"),
])
def test_train_tokenizer_bad_corpus(tmp_path, capsys, content, expected):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    output = tmp_path / "new" / "deeper" / "spm"
    line = one_line(capsys, data_cli.run_or_exit, train_tokenizer.run,
                    _tokenizer_flags(str(corpus), str(output)))
    assert str(corpus) in line and expected in line
    assert not (tmp_path / "new").exists()  # no empty output directory left


def test_train_tokenizer_failure_leaves_no_directory(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b c\n" * 3)
    flags = _tokenizer_flags(str(corpus), str(tmp_path / "new" / "spm"))
    flags.vocab_size = 5000  # too large for the corpus: SentencePiece fails
    line = one_line(capsys, data_cli.run_or_exit, train_tokenizer.run, flags)
    assert "--vocab_size=5000" in line and not (tmp_path / "new").exists()


def test_train_tokenizer_counts_lines_sentencepiece_skips(tmp_path, caplog):
    corpus = tmp_path / "corpus.txt"
    long_line = "word " * 1000  # 5000 bytes > 4192
    corpus.write_text("\n".join(["the quick brown fox jumps over the lazy dog"] * 50
                                + [long_line] * 3) + "\n")
    assert tokenization.check_corpus([str(corpus)]) == 53
    assert f"{corpus}: 3 line(s) longer than" in caplog.text


# --------------------------------------------------- full disk, killed builds
def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_next_build_removes_temporaries_of_dead_builds(mlm_data, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    host = atomic._host()  # pylint: disable=protected-access
    dead = out / f".tmp-{host}-{_dead_pid()}-abcd1234"
    live = out / f".tmp-{host}-{os.getpid()}-live0000"
    other_host = out / f".tmp-elsewhere-{_dead_pid()}-abcd1234"
    old_style = out / ".tmp-q1w2e3r4"  # named before directories carried host and pid
    for path in (dead, live, other_host, old_style):
        (path / "train").mkdir(parents=True)
        (path / "train" / "shard-00000-of-00001.tfrecord").write_bytes(b"x" * 1000)
    os.utime(old_style, (0, 0))  # 1970: older than STALE_SECONDS
    builder.build([mlm_data["corpus"]], mlm_data["tokenizer"], str(out),
                  task=tasks.TaskConfig(max_seq_length=16, max_predictions_per_seq=2),
                  num_shards=1, docs_per_unit=1000)
    assert sorted(os.listdir(out)) == sorted([live.name, other_host.name, "train"])


def test_full_disk_during_build(mlm_data, tmp_path, capsys):
    with small_tmpfs(tmp_path / "small", "64k") as mount:
        out = mount / "data"
        line = one_line(capsys, data_cli.run_or_exit, builder.build, [mlm_data["corpus"]],
                        mlm_data["tokenizer"], str(out),
                        task=tasks.TaskConfig(max_seq_length=32, max_predictions_per_seq=5),
                        num_shards=2, eval_fraction=0.1)
        assert str(out) in line and "No space left on device" in line
        assert os.listdir(mount) == []  # no .tmp-*, not even the created output dir


# ------------------------------------------------------------ real processes
def test_cli_processes_exit_2_with_one_line(run_dir, mlm_data, tmp_path):
    """Two real processes at once: `generate` without a --prompt, `inspect
    --verify` of a split with an empty shard: exit 2, an `error:` line naming
    the file or flag, no traceback, no usage text. (`build` and
    `train_tokenizer` processes: tests/data_pipeline/test_build.py.)"""
    split = tmp_path / "train"
    shutil.copytree(mlm_data["train_dir"], split)
    empty_shard = split / "shard-00000-of-00002.tfrecord"
    empty_shard.write_bytes(b"")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    commands = {
        "generate": [sys.executable, "-m", "pretraining.generate", f"--model_dir={run_dir}",
                     f"--tokenizer={mlm_data['tokenizer']}"],
        "inspect": [sys.executable, "-m", "data_pipeline.inspect", str(split), "--verify"],
    }
    processes = {name: subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
                 for name, command in commands.items()}
    for name, process in processes.items():
        _, err = process.communicate(timeout=180)
        assert process.returncode == 2, (name, err[-2000:])
        errors = [l for l in err.splitlines() if "error: " in l]
        assert "Traceback" not in err and "USAGE" not in err, (name, err[-2000:])
        assert errors, (name, err[-2000:])
        expected = {"generate": "--prompt is required", "inspect": str(empty_shard)}[name]
        assert expected in errors[-1], (name, errors)


# ------------------------------------------------------ one CLI convention
CLIS = ("data_pipeline.build", "data_pipeline.inspect", "data_pipeline.train_tokenizer",
        "data_pipeline.google_records", "data_pipeline.native", "data_pipeline.prepare_tfds",
        "data_pipeline.sample_corpus",
        "pretraining.train",
        "pretraining.demo", "pretraining.convert", "pretraining.generate",
        "pretraining.evaluate", "pretraining.export_batches", "pretraining.finetune",
        "pretraining.demo_finetune")

# Runs a tool as `python -m` would (sys.argv[0] is "-m" while the package is
# imported, then the module's path), then reports its exit status and whether
# TensorFlow or Keras was imported, on the last line of stderr.
_PROBE = """import json, runpy, sys
module, args = sys.argv[1], sys.argv[2:]
sys.argv = ["-m", *args]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("tensorflow", "keras", "numpy") if m in sys.modules)
sys.stderr.write("\\n" + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def _probe_all(*args):
    """Every CLI run at once with `args`: {module: (exit code, heavy modules,
    stdout, stderr without the probe's line)}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    processes = {m: subprocess.Popen([sys.executable, "-c", _PROBE, m, *args], cwd=REPO_ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env) for m in CLIS}
    results = {}
    for module, process in processes.items():
        out, err = process.communicate(timeout=120)
        body, _, probe = err.rstrip("\n").rpartition("\n")
        report = json.loads(probe)
        results[module] = (report["code"], report["heavy"], out, body.strip())
    return results


def test_every_cli_help_exits_0_without_tensorflow():
    for module, (code, heavy, out, err) in _probe_all("--help").items():
        assert code == 0, (module, code, err)
        assert "tensorflow" not in heavy and "keras" not in heavy, (module, heavy)
        assert len(out.splitlines()) > 3, (module, out)  # the usage, on stdout
        assert err == "", (module, err)  # no warning either


def test_every_cli_bad_flag_is_one_line_exit_2():
    for module, (code, heavy, _, err) in _probe_all("--no_such_flag=7").items():
        assert code == 2, (module, code, err)
        assert err.splitlines() == [err] and err.startswith("error: "), (module, err)
        assert "no_such_flag" in err and "--help" in err, (module, err)
        assert "tensorflow" not in heavy, (module, heavy)


def test_flag_values_and_errors_are_one_line_printed_once(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    missing = tmp_path / "missing.json"
    cases = {  # an absl enum, a required flag, a user error raised in main (TensorFlow loaded)
        "enum": (["data_pipeline.build", "--task=xyz", "--input=a", "--tokenizer=b",
                  "--output_dir=c"], ["--task", "xyz", "mlm"]),
        "required": (["pretraining.generate", "--tokenizer=t"], ["--model_dir"]),
        "experiment": (["pretraining.train", f"--experiment={missing}",
                        f"--model_dir={tmp_path / 'run'}"], [str(missing)]),
    }
    processes = {name: subprocess.Popen([sys.executable, "-m", *command], cwd=REPO_ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
                 for name, (command, _) in cases.items()}
    for name, process in processes.items():
        _, err = process.communicate(timeout=180)
        assert process.returncode == 2, (name, err[-2000:])
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in err, (name, err[-2000:])
        assert err.count(errors[0][len("error: "):]) == 1, (name, err[-2000:])  # not logged too
        for text in cases[name][1]:
            assert text in errors[0], (name, errors)


def test_run_summary_prints_plain_numbers():
    import numpy as np
    line = cli.to_json({"loss": np.float64(2.5), "steps": np.int64(3), "ok": np.float32(0.5)})
    assert json.loads(line) == {"loss": 2.5, "steps": 3, "ok": 0.5} and "np." not in line
