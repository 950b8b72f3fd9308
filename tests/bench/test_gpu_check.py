"""bench/gpu_check.sh on a machine without a GPU: its --dry-run prints the
commands it would run (shell-quoted, so they parse back into argv), runs
none of them, and bad settings are refused with exit status 2."""

import os
import shlex
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "bench", "gpu_check.sh")


def _dry_run(tmp_path, *args, **env):
    settings = {k: v for k, v in os.environ.items() if k not in ("GPU_NAME", "PEAK_TFLOPS")}
    settings.update(VENV=str(tmp_path / "venv"), PEER_VENV=str(tmp_path / "peer"),
                    OUT_DIR=str(tmp_path / "out"), **env)
    return subprocess.run(["bash", SCRIPT, "--dry-run", *args], cwd=REPO_ROOT, env=settings,
                          capture_output=True, text=True, timeout=30)


def _commands(stdout):
    """The printed commands as argv lists (a `| tee` suffix cut off)."""
    commands = []
    for line in stdout.splitlines():
        if line.startswith("+ ") and not line.startswith("+ summary"):
            argv = shlex.split(line[2:])
            commands.append(argv[:argv.index("2>&1")] if "2>&1" in argv else argv)
    return commands


def _one(commands, *words):
    found = [argv for argv in commands if all(w in argv for w in words)]
    assert len(found) == 1, (words, commands)
    return found[0]


def _flag(argv, name):
    return argv[argv.index(name) + 1]


def test_dry_run_prints_install_tests_and_the_three_benchmarks(tmp_path):
    result = _dry_run(tmp_path, GPU_NAME="NVIDIA H100 80GB HBM3")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    venv, peer = str(tmp_path / "venv"), str(tmp_path / "peer")
    install = _one(commands, "install", "-e")
    assert install[0] == f"{venv}/bin/python" and ".[gpu]" in install and "pytest" in install
    peer_install = _one(commands, f"{peer}/bin/python", "install", "--quiet", "transformers")
    assert any(w.startswith("torch") for w in peer_install[5:])
    (tests,) = [argv for argv in commands if argv[1:3] == ["-m", "pytest"]]
    assert tests[0] == f"{venv}/bin/python" and "tests/pretraining/test_trainer.py" in tests

    ours = _one(commands, "bench/train_step.py")
    assert ours[0] == f"{venv}/bin/python"
    for name, value in [("--config", "M"), ("--precision", "bf16"), ("--jit", "1"),
                        ("--whole-step", "1"), ("--device", "gpu"), ("--peak-tflops", "989")]:
        assert _flag(ours, name) == value, name
    steps = (int(_flag(ours, "--warmup"))
             + int(_flag(ours, "--steps")) * int(_flag(ours, "--blocks")))
    assert 150 <= steps <= 250  # ~200 steps
    hf = [_one(commands, "bench/hf_step.py", "--mode", mode) for mode in ("eager", "compile")]
    for argv in hf:
        assert argv[0] == f"{peer}/bin/python"
        for name in ("--config", "--batch", "--warmup", "--steps", "--blocks", "--peak-tflops"):
            assert _flag(argv, name) == _flag(ours, name), name  # the same shapes and steps
        assert _flag(argv, "--precision") == "bf16" and _flag(argv, "--device") == "cuda"
    # The order: install, tests, ours, then the peer.
    order = [commands.index(c) for c in (install, tests, ours, *hf)]
    assert order == sorted(order)
    # Nothing ran.
    assert not any((tmp_path / name).exists() for name in ("venv", "peer", "out"))


def test_peak_table_override_and_unknown_gpu(tmp_path):
    def peak(**env):
        result = _dry_run(tmp_path, **env)
        assert result.returncode == 0, result.stderr
        return _flag(_one(_commands(result.stdout), "bench/train_step.py"), "--peak-tflops")

    assert peak(GPU_NAME="NVIDIA A100-SXM4-80GB") == "312"
    assert peak(GPU_NAME="NVIDIA L4") == "121"
    assert peak(GPU_NAME="NVIDIA L40S") == "362"
    assert peak(GPU_NAME="NVIDIA H200", PEAK_TFLOPS="900.5") == "900.5"
    result = _dry_run(tmp_path, GPU_NAME="Some Future GPU")
    assert "MFU not computed" in result.stderr and "PEAK_TFLOPS" in result.stderr
    assert _flag(_one(_commands(result.stdout), "bench/train_step.py"), "--peak-tflops") == "0"


@pytest.mark.parametrize("args, env, named", [
    (["--bogus"], {}, "--bogus"),
    ([], {"BATCH": "0"}, "BATCH"),
    ([], {"STEPS": "many"}, "STEPS"),
    ([], {"PEAK_TFLOPS": "fast"}, "PEAK_TFLOPS"),
])
def test_bad_settings_are_refused(tmp_path, args, env, named):
    result = _dry_run(tmp_path, *args, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]


def test_without_nvidia_smi_it_refuses_to_start(tmp_path):
    env = dict(os.environ, PATH="/usr/bin:/bin", VENV=str(tmp_path / "venv"))
    if shutil.which("nvidia-smi", path=env["PATH"]):
        pytest.skip("this machine has nvidia-smi")
    result = subprocess.run(["bash", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "nvidia-smi" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_shellcheck_is_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(["shellcheck", SCRIPT], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout
