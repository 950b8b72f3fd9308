"""The package as users install it: a wheel built from this tree, installed
into a fresh venv (no `-e`), its command-line tools run from an empty
directory; and the TPU extra resolving on PyPI.

Marked `ports`: not part of `make test`; `make test-ports` and CI run them.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from data_pipeline import corpus, sample_corpus
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.ports

# What a source tree copy leaves out: environments, build outputs, runs.
_IGNORE = shutil.ignore_patterns(".git", ".venv*", "runs", "build", "dist", "*.egg-info",
                                 "__pycache__", ".pytest_cache", "*.so")


def _run(argv, cwd, env, timeout=300):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the wheel installed; TensorFlow & co. come from this test
    environment's site-packages (a .pth after the venv's own), so nothing is
    downloaded and the wheel's `pretraining` is the one imported."""
    root = tmp_path_factory.mktemp("package")
    src = root / "src"
    shutil.copytree(REPO_ROOT, src, ignore=_IGNORE, symlinks=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # This environment's setuptools builds it when there is one (no download).
    isolation = [] if importlib.util.find_spec("setuptools") is None else [
        "--no-build-isolation"]
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
          "--quiet", "-w", str(root / "dist"), str(src)], cwd=root, env=env)
    (wheel,) = (root / "dist").glob("bert_pretraining-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env)
    python = venv / "bin" / "python"
    venv_site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     cwd=root, env=env).stdout.strip()
    with open(os.path.join(venv_site, "zz_test_env.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    # --no-index: every requirement of the wheel must already be satisfied.
    _run([str(python), "-m", "pip", "install", "--no-index", "--quiet", f"{wheel}[cpu]"],
         cwd=root, env=env)
    work = root / "work"  # the user's empty directory
    work.mkdir()
    return {"python": str(python), "work": work, "env": env, "site": venv_site,
            "wheel": wheel}


def test_wheel_ships_both_packages_and_the_configs(installed):
    import zipfile
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for expected in ("pretraining/__init__.py", "pretraining/train.py",
                     "pretraining/formats/huggingface.py", "pretraining/optimizers/adamw.py",
                     "pretraining/configs/experiments/smoke_cpu.json",
                     "pretraining/configs/models/bert_base.json",
                     "data_pipeline/build.py", "data_pipeline/native/dynamic_mask_op.cc"):
        assert expected in names, expected
    assert not any(n.startswith("tests/") for n in names)
    probe = _run([installed["python"], "-c",
                  "import pretraining, data_pipeline; print(pretraining.__file__); "
                  "print(data_pipeline.__file__)"],
                 cwd=installed["work"], env=installed["env"]).stdout.split()
    assert all(p.startswith(installed["site"]) for p in probe), probe


def test_clis_from_an_empty_directory(installed):
    """tokenizer → records → smoke_cpu training → Hugging Face export → an lm
    run → generation, each through `python -m …` of the installed wheel."""
    python, work, env = installed["python"], installed["work"], installed["env"]
    documents = []
    for document in sample_corpus.sample_documents():
        documents.append(document)
        if len(documents) == 300:
            break
    corpus.write_documents(documents, str(work / "corpus.txt"))

    def cli(*argv):
        return _run([python, "-m", *argv], cwd=work, env=env)

    # The dynamic-masking kernel compiles from the source the wheel ships.
    built = cli("data_pipeline.native")
    assert "built " in built.stdout + built.stderr
    cli("data_pipeline.train_tokenizer", "--input=corpus.txt", "--vocab_size=300",
        "--output=spm")
    common = ["--input=corpus.txt", "--tokenizer=spm.model", "--max_seq_length=64",
              "--seed=1", "--num_shards=2", "--eval_fraction=0.1"]
    cli("data_pipeline.build", "--task=mlm", "--output_dir=mlm", "--max_predictions_per_seq=10",
        "--masking=dynamic", *common)
    steps = ["--override=train.steps=4", "--override=train.steps_per_loop=2",
             "--override=train.checkpoint_every=4", "--override=train.eval_steps=2",
             "--override=train.global_batch_size=8", "--override=model.vocab_size=300"]
    # A shipped experiment by name; record paths given on the command line are
    # taken from the current directory.
    cli("pretraining.train", "--experiment=smoke_cpu", "--model_dir=run",
        "--override=data.train_dir=mlm/train", "--override=data.eval_dir=mlm/eval", *steps)
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["step"] == 4 and summary["eval_loss"] > 0
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["data"]["train_dir"] == str(work / "mlm" / "train")

    cli("pretraining.convert", "--input=run", "--input_format=native", "--output=run_hf",
        "--output_format=hf")
    hf_config = json.loads((work / "run_hf" / "config.json").read_text())
    assert hf_config["vocab_size"] == 300 and (work / "run_hf" / "model.safetensors").exists()

    cli("data_pipeline.build", "--task=lm", "--output_dir=lm", *common)
    cli("pretraining.train", "--experiment=sample_lm", "--model_dir=lm_run",
        "--override=data.train_dir=lm/train", "--override=data.eval_dir=lm/eval", *steps)
    out = cli("pretraining.generate", "--model_dir=lm_run", "--tokenizer=spm.model",
              "--prompt=The file", "--max_new_tokens=5")
    assert out.stdout.strip(), out.stderr[-2000:]
    # Nothing was written outside the working directory's named outputs.
    assert sorted(p.name for p in work.iterdir()) == sorted(
        ["corpus.txt", "spm.model", "spm.vocab", "mlm", "run", "run_hf", "lm", "lm_run"])


def _registry_reachable() -> str:
    """'' when PyPI answers, else why not."""
    try:
        result = subprocess.run([sys.executable, "-m", "pip", "index", "versions",
                                 "tensorflow-tpu"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "pip index timed out after 60 s"
    return "" if result.returncode == 0 else f"pip index failed: {result.stderr[-300:]}"


def test_tpu_extra_resolves_on_pypi(tmp_path):
    """`pip install --dry-run ".[tpu]"`: tensorflow-tpu (2.20, its newest) and
    everything it needs resolve from the registry; no wheel is downloaded."""
    why = _registry_reachable()
    if why:
        pytest.skip(f"the package registry is not reachable here ({why})")
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, ignore=_IGNORE, symlinks=True)
    report = tmp_path / "report.json"
    _run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
          "--report", str(report), f"{src}[tpu]"], cwd=tmp_path, env=dict(os.environ),
         timeout=600)
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    assert resolved["tensorflow-tpu"].startswith("2.20."), resolved.get("tensorflow-tpu")
    assert "keras" in resolved and "tensorflow-cpu" not in resolved
