"""The shell launchers in launch/: --help, --dry-run commands, quoting, errors,
shellcheck. Nothing here contacts gcloud or ssh: every run is a dry run."""

import json
import os
import shlex
import shutil
import subprocess

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO_ROOT, "launch")
SCRIPTS = ["tpu_vm.sh", "gpu_single_host.sh", "gpu_multi_worker.sh",
           "dataflow_build.sh"]
TPU_ENV = {"PROJECT": "my-project", "ZONE": "us-central2-b", "BUCKET": "my-bucket"}


def run(script, *args, env=None, check=True):
    """Runs launch/`script` with only PATH and HOME from the outside world."""
    full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    full_env.update(env or {})
    result = subprocess.run([os.path.join(LAUNCH, script), *args], env=full_env,
                            capture_output=True, text=True, timeout=20)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def commands(stdout):
    """The commands a dry run printed (`+ cmd`), each split like a shell would."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def flag(argv, name):
    values = [a.split("=", 1)[1] for a in argv if a.startswith(name + "=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def remote(argv):
    """The command run on the TPU VMs (`--command=…`), split by the remote shell."""
    return shlex.split(flag(argv, "--command"))


def train_argv(words):
    start = words.index("pretraining.train") - 2  # PYTHON -m pretraining.train
    end = next((i for i in range(start, len(words)) if words[i] in (">", "2>&1")), len(words))
    return words[start:end]


# ---- every script -----------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_shebang_strict_mode_and_help(script):
    with open(os.path.join(LAUNCH, script), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(os.path.join(LAUNCH, script), os.X_OK)
    result = run(script, "--help")
    assert "Usage:" in result.stdout and "--dry-run" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_argument_is_refused(script):
    result = run(script, "--no-such-flag", env=TPU_ENV, check=False)
    assert result.returncode != 0
    assert "unknown argument" in result.stderr and "--no-such-flag" in result.stderr


@pytest.mark.parametrize("script,env,args,variable", [
    ("tpu_vm.sh", {"ZONE": "z"}, ["create"], "PROJECT"),
    ("tpu_vm.sh", {"PROJECT": "p"}, ["create"], "ZONE"),
    ("tpu_vm.sh", {"PROJECT": "p", "ZONE": "z"}, ["run"], "BUCKET"),
    ("gpu_single_host.sh", {}, [], "MODEL_DIR"),
    ("gpu_multi_worker.sh", {"MODEL_DIR": "m"}, [], "HOSTS"),
    ("gpu_multi_worker.sh", {"HOSTS": "h1"}, [], "MODEL_DIR"),
    ("dataflow_build.sh", {"BUCKET": "b", "CORPUS": "gs://b/*.txt"}, [], "PROJECT"),
    ("dataflow_build.sh", {"PROJECT": "p", "CORPUS": "gs://b/*.txt"}, [], "BUCKET"),
    ("dataflow_build.sh", {"PROJECT": "p", "BUCKET": "b"}, [], "CORPUS"),
    ("dataflow_build.sh", {"PROJECT": "p", "BUCKET": "b", "CORPUS": "c"}, [],
     "TOKENIZER_SAMPLE"),
])
def test_missing_variable_is_named(script, env, args, variable):
    result = run(script, "--dry-run", *args, env=env, check=False)
    assert result.returncode != 0
    assert f"{variable} is not set: export {variable}=" in result.stderr
    assert not commands(result.stdout)  # refused before printing anything to run


def test_shellcheck_is_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not on PATH (apt-get install -y shellcheck)")
    # -x follows `source launch/common.sh` (paths relative to the repository).
    files = [os.path.join("launch", s) for s in SCRIPTS + ["common.sh"]]
    result = subprocess.run(["shellcheck", "-x", *files], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- tpu_vm.sh ----------------------------------------------------------------

def test_tpu_create_line():
    env = dict(TPU_ENV, ACCELERATOR_TYPE="v3-8", ZONE="europe-west4-a", TPU_NAME="my tpu")
    (argv,) = commands(run("tpu_vm.sh", "--dry-run", "create", env=env).stdout)
    assert argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
    assert argv[5] == "my tpu"
    assert flag(argv, "--accelerator-type") == "v3-8"
    assert flag(argv, "--zone") == "europe-west4-a"
    assert flag(argv, "--project") == "my-project"
    assert flag(argv, "--version") == "tpu-ubuntu2204-base"
    assert "--spot" not in argv and "--preemptible" not in argv


@pytest.mark.parametrize("accelerator,runtime", [
    ("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-8", "v2-alpha-tpuv5-lite"),
    ("v5p-8", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e")])
def test_tpu_create_picks_the_generations_base_image(accelerator, runtime):
    env = dict(TPU_ENV, ACCELERATOR_TYPE=accelerator)
    (argv,) = commands(run("tpu_vm.sh", "--dry-run", "create", env=env).stdout)
    assert flag(argv, "--version") == runtime
    env["RUNTIME_VERSION"] = "tpu-vm-tf-2.16.1-pjrt"  # the user's choice wins
    (argv,) = commands(run("tpu_vm.sh", "--dry-run", "create", env=env).stdout)
    assert flag(argv, "--version") == "tpu-vm-tf-2.16.1-pjrt"


def test_tpu_create_refuses_an_unknown_generation_without_a_runtime():
    result = run("tpu_vm.sh", "--dry-run", "create", check=False,
                 env=dict(TPU_ENV, ACCELERATOR_TYPE="v9x-8"))
    assert result.returncode == 2
    assert "ACCELERATOR_TYPE=v9x-8" in result.stderr and "RUNTIME_VERSION" in result.stderr
    assert not commands(result.stdout)


@pytest.mark.parametrize("option", ["--spot", "--preemptible"])
def test_tpu_create_spot_or_preemptible(option):
    (argv,) = commands(run("tpu_vm.sh", "--dry-run", option, "create", env=TPU_ENV).stdout)
    assert option in argv


def test_tpu_setup_installs_the_tpu_extra_on_every_worker():
    cmds = commands(run("tpu_vm.sh", "--dry-run", "setup", env=TPU_ENV).stdout)
    assert [c[0] for c in cmds] == ["tar", "gcloud", "gcloud"]
    scp, ssh = cmds[1], cmds[2]
    assert scp[4] == "scp" and "--worker=all" in scp
    assert ssh[4] == "ssh" and "--worker=all" in ssh
    command = flag(ssh, "--command").replace("'", '"')
    # tensorflow-tpu 2.20 and its libtpu both come from PyPI: no other index.
    assert 'install -q -e ".[tpu]";' in command and " -f " not in command
    assert "python -m data_pipeline.native" in command
    env = dict(TPU_ENV, LIBTPU_INDEX="https://example.invalid/libtpu.html")
    ssh = commands(run("tpu_vm.sh", "--dry-run", "setup", env=env).stdout)[2]
    assert '-e ".[tpu]" -f https://example.invalid/libtpu.html;' in \
        flag(ssh, "--command").replace("'", '"')


@pytest.mark.parametrize("accelerator,tpu", [("v4-8", "local"), ("v3-8", "local"),
                                             ("v4-32", "my-pod"), ("v5litepod-16", "my-pod")])
def test_tpu_run_resolves_local_or_pod(accelerator, tpu):
    env = dict(TPU_ENV, ACCELERATOR_TYPE=accelerator, TPU_NAME="my-pod")
    (argv,) = commands(run("tpu_vm.sh", "--dry-run", "run", env=env).stdout)
    assert argv[4] == "ssh" and "--worker=all" in argv
    train = train_argv(remote(argv))
    assert flag(train, "--strategy") == "tpu"
    assert flag(train, "--tpu") == tpu


def test_tpu_run_is_detached_with_gs_paths_and_per_worker_logs():
    env = dict(TPU_ENV, MODEL_DIR="gs://b/my run", INIT_CHECKPOINT="gs://b/runs/phase 1")
    (argv,) = commands(run("tpu_vm.sh", "--dry-run", "run", "--",
                           "--override=train.steps=7", env=env).stdout)
    words = remote(argv)
    assert "nohup" in words and "setsid" in words
    assert '"logs/train-$(hostname).log"' in flag(argv, "--command")
    train = train_argv(words)
    assert flag(train, "--model_dir") == "gs://b/my run"  # quoted twice, split twice
    assert flag(train, "--experiment") == "configs/experiments/bert_base_phase1_tpu.json"
    overrides = [a.split("=", 1)[1] for a in train if a.startswith("--override=")]
    assert overrides == ["data.train_dir=gs://my-bucket/data/seq128/train",
                         "data.eval_dir=gs://my-bucket/data/seq128/eval",
                         "train.init_checkpoint=gs://b/runs/phase 1", "train.steps=7"]


@pytest.mark.parametrize("command,verb", [("status", "describe"), ("logs", "ssh"),
                                          ("stop", "ssh"), ("delete", "delete"),
                                          ("stage", "ssh")])
def test_tpu_other_commands(command, verb):
    cmds = commands(run("tpu_vm.sh", "--dry-run", command, env=TPU_ENV).stdout)
    assert cmds and all(c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] for c in cmds)
    assert cmds[0][4] == verb
    if command == "stop":
        assert "kill -TERM" in flag(cmds[0], "--command")


def test_tpu_flags_after_dashes_only_for_run():
    result = run("tpu_vm.sh", "--dry-run", "create", "--", "--override=x.y=1", env=TPU_ENV,
                 check=False)
    assert result.returncode != 0 and "run" in result.stderr


# ---- gpu_single_host.sh -----------------------------------------------------------

def test_gpu_single_host_mirrored_xla_mixed_precision_and_extra_overrides():
    env = {"MODEL_DIR": "gs://b/my run", "TRAIN_DIR": "/data/seq 128/train", "PYTHON": "python3"}
    (argv,) = commands(run("gpu_single_host.sh", "--dry-run", "--xla",
                           "--mixed_precision=mixed_bfloat16", "--gpus=0,1", "--",
                           "--override=train.steps=10", env=env).stdout)
    assert argv[:2] == ["env", "CUDA_VISIBLE_DEVICES=0,1"]
    train = train_argv(argv)
    assert train[:3] == ["python3", "-m", "pretraining.train"]
    assert flag(train, "--strategy") == "mirrored"
    assert flag(train, "--model_dir") == "gs://b/my run"
    overrides = [a.split("=", 1)[1] for a in train if a.startswith("--override=")]
    assert overrides == ["data.train_dir=/data/seq 128/train", "train.jit_compile=true",
                         "train.mixed_precision=mixed_bfloat16", "train.steps=10"]


def test_gpu_single_host_defaults_and_bad_values():
    (argv,) = commands(run("gpu_single_host.sh", "--dry-run", env={"MODEL_DIR": "m"}).stdout)
    assert not any(a.startswith("--override") for a in argv)
    assert "CUDA_VISIBLE_DEVICES" not in " ".join(argv)
    bad = run("gpu_single_host.sh", "--dry-run", "--mixed_precision=fp8",
              env={"MODEL_DIR": "m"}, check=False)
    assert bad.returncode != 0 and "--mixed_precision" in bad.stderr


# ---- gpu_multi_worker.sh ----------------------------------------------------------

def _check_tf_config(config, index, addresses):
    assert config == {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}


def test_multi_worker_dry_run_starts_one_worker_per_host_over_ssh():
    env = {"HOSTS": "gpu-a,gpu-b,10.0.0.3:2000", "PORT": "23456", "MODEL_DIR": "gs://b/my run",
           "SSH_USER": "me", "SSH_OPTS": "-o BatchMode=yes"}
    cmds = commands(run("gpu_multi_worker.sh", "--dry-run", "--", "--override=train.steps=3",
                        env=env).stdout)
    addresses = ["gpu-a:23456", "gpu-b:23456", "10.0.0.3:2000"]
    assert [c[:4] for c in cmds] == [["ssh", "-o", "BatchMode=yes", f"me@{h}"]
                                     for h in ("gpu-a", "gpu-b", "10.0.0.3")]
    for index, argv in enumerate(cmds):
        words = shlex.split(argv[-1])
        (assignment,) = [w for w in words if w.startswith("TF_CONFIG=")]
        _check_tf_config(json.loads(assignment.split("=", 1)[1]), index, addresses)
        assert "nohup" in words and f"logs/worker-{index}.log" in words
        train = train_argv(words)
        assert flag(train, "--strategy") == "multi_worker"
        assert flag(train, "--model_dir") == "gs://b/my run"
        assert "--override=train.steps=3" in train


def test_multi_worker_print_gives_each_host_its_tf_config():
    env = {"HOSTS": "h1,h2", "MODEL_DIR": "runs/x"}
    stdout = run("gpu_multi_worker.sh", "--print", env=env).stdout
    assert not commands(stdout)  # nothing would be run
    lines = [line for line in stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2
    for index, line in enumerate(lines):
        words = shlex.split(line)
        (assignment,) = [w for w in words if w.startswith("TF_CONFIG=")]
        _check_tf_config(json.loads(assignment.split("=", 1)[1]), index,
                         ["h1:12345", "h2:12345"])


@pytest.mark.parametrize("env,message", [
    ({"HOSTS": "h1,h;rm -rf", "MODEL_DIR": "m"}, "HOSTS entries"),
    ({"HOSTS": "h1,,h2", "MODEL_DIR": "m"}, "empty entry"),
    ({"HOSTS": "h1", "PORT": "http", "MODEL_DIR": "m"}, "PORT"),
])
def test_multi_worker_refuses_bad_hosts_and_ports(env, message):
    result = run("gpu_multi_worker.sh", "--print", env=env, check=False)
    assert result.returncode != 0 and message in result.stderr


# ---- dataflow_build.sh --------------------------------------------------------

DATAFLOW_ENV = {"PROJECT": "my-project", "BUCKET": "my-bucket",
                "CORPUS": "gs://my-bucket/wiki/*.txt"}


def _build_argv(cmds):
    builds = [c for c in cmds if "data_pipeline.build" in c]
    assert len(builds) == 1, cmds
    return builds[0]


def test_dataflow_trains_a_tokenizer_on_the_sample_then_builds_on_dataflow():
    env = dict(DATAFLOW_ENV, TOKENIZER_SAMPLE="gs://my-bucket/wiki/part 0.txt",
               MACHINE_TYPE="n2-highcpu-16", NUM_WORKERS="4", MAX_WORKERS="64",
               PYTHON="py")
    cmds = commands(run("dataflow_build.sh", "--dry-run", "--", "--next_sentence",
                        env=env).stdout)
    assert cmds[1] == ["gcloud", "storage", "cp", "gs://my-bucket/wiki/part 0.txt",
                       "/tmp/dataflow_build/sample/"]
    assert cmds[2][:3] == ["py", "-m", "data_pipeline.train_tokenizer"]
    assert flag(cmds[2], "--input") == "/tmp/dataflow_build/sample/*"
    assert cmds[3][-1] == "gs://my-bucket/data/seq128/tokenizer/"
    argv = _build_argv(cmds)
    assert argv[:4] == ["py", "-m", "data_pipeline.build", "--runner=DataflowRunner"]
    assert flag(argv, "--input") == "gs://my-bucket/wiki/*.txt"
    assert flag(argv, "--tokenizer") == "gs://my-bucket/data/seq128/tokenizer/spm.model"
    assert flag(argv, "--output_dir") == "gs://my-bucket/data/seq128"
    options = [a.split("=", 1)[1] for a in argv if a.startswith("--beam_option=")]
    assert "--project=my-project" in options
    assert "--machine_type=n2-highcpu-16" in options
    assert "--num_workers=4" in options and "--max_num_workers=64" in options
    assert "--temp_location=gs://my-bucket/dataflow/tmp" in options
    setup = [o for o in options if o.startswith("--setup_file=")]
    assert setup == [f"--setup_file={REPO_ROOT}/setup.py"]
    requirements = next(o.split("=", 1)[1] for o in options
                        if o.startswith("--requirements_file="))
    assert os.path.exists(requirements)
    assert argv[-1] == "--next_sentence"


def test_dataflow_with_a_tokenizer_skips_training():
    env = dict(DATAFLOW_ENV, TOKENIZER="gs://my-bucket/spm.model",
               OUTPUT_DIR="gs://my-bucket/out")
    cmds = commands(run("dataflow_build.sh", "--dry-run", env=env).stdout)
    assert len(cmds) == 1
    assert flag(cmds[0], "--tokenizer") == "gs://my-bucket/spm.model"
    assert flag(cmds[0], "--output_dir") == "gs://my-bucket/out"


def test_dataflow_refuses_a_bad_worker_count():
    env = dict(DATAFLOW_ENV, TOKENIZER="gs://b/spm.model", MAX_WORKERS="many")
    result = run("dataflow_build.sh", "--dry-run", env=env, check=False)
    assert result.returncode == 2
    assert "MAX_WORKERS must be a positive integer" in result.stderr and "many" in result.stderr
