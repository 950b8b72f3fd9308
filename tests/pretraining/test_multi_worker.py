"""MultiWorkerMirroredStrategy: 2 worker processes on 127.0.0.1."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from pretraining.trainer import Trainer
from tests.conftest import REPO_ROOT, tiny_experiment

LAUNCHER = os.path.join(REPO_ROOT, "launch", "local_cluster.py")


def _launch(args, timeout):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, LAUNCHER, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_one_failing_worker_stops_the_cluster(tmp_path):
    pid_file = tmp_path / "pid"
    worker = ("import json, os, sys, time\n"
              "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
              "ports = json.loads(os.environ['TF_CONFIG'])['cluster']['worker']\n"
              "print('ready', len(ports), flush=True)\n"
              f"if index == 0:\n    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
              "    time.sleep(300)\n"
              "time.sleep(1)\nsys.exit(3)\n")
    start = time.time()
    result = _launch(["--num_workers=2", "--timeout=120", "--grace=5", "--",
                      sys.executable, "-c", worker], timeout=150)
    assert result.returncode == 3, result.stderr
    assert time.time() - start < 60
    assert "worker 1 exited with status 3" in result.stderr
    assert "[worker 0] ready 2" in result.stdout and "[worker 1] ready 2" in result.stdout
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the sleeping worker was stopped, not left behind


def test_timeout_stops_everything(tmp_path):
    result = _launch(["--num_workers=2", "--timeout=2", "--grace=2", "--",
                      sys.executable, "-c", "import time; time.sleep(300)"], timeout=60)
    assert result.returncode == 124
    assert "--timeout=2s passed" in result.stderr


def _weights_of(model_dir):
    """Every weight in the last checkpoint: most are saved under the first
    path the object graph reaches them by, the optimizer's."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.startswith(("model/", "optimizer/_trainable_variables/"))
            and "OPTIMIZER_SLOT" not in n}


@pytest.mark.slow
# seq2seq under a collective strategy: also test_distributed.py::test_seq2seq_mirrored_equals_default.
@pytest.mark.parametrize("task", ["mlm", pytest.param("seq2seq", marks=pytest.mark.extended)])
def test_multi_worker_equals_default(request, tmp_path, task):
    """Dropout on: each example's masks are keyed on its global index, so the
    two workers' replicas draw what one device draws for their rows."""
    data = (request.getfixturevalue("mlm_data") if task == "mlm"
            else request.getfixturevalue("task_data")["seq2seq"])
    experiment = tiny_experiment(data, steps=20, global_batch_size=8, steps_per_loop=5,
                                 checkpoint_every=20)
    experiment.task = task
    experiment.model.attention_mask_type = {"mlm": "bidirectional", "seq2seq": "unilm"}[task]
    experiment.model.hidden_dropout_prob = 0.1
    experiment.model.attention_probs_dropout_prob = 0.1
    default_dir, multi_dir = str(tmp_path / "default"), str(tmp_path / "multi")
    Trainer(experiment, default_dir).train()
    path = tmp_path / "experiment.json"
    path.write_text(experiment.to_json())
    result = _launch(["--num_workers=2", "--timeout=400", "--",
                      sys.executable, "-m", "pretraining.train", "--strategy=multi_worker",
                      f"--experiment={path}", f"--model_dir={multi_dir}"], timeout=450)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "2 replica(s)" in result.stdout
    one = [json.loads(l) for l in open(os.path.join(default_dir, "metrics.jsonl"))]
    two = [json.loads(l) for l in open(os.path.join(multi_dir, "metrics.jsonl"))]
    # The train windows, then the final evaluation's record (eval_* keys).
    assert [(r["step"], "eval_loss" in r) for r in one] == [
        (r["step"], "eval_loss" in r) for r in two] == [(1, False), (5, False), (10, False),
                                                        (15, False), (20, False), (20, True)]
    for a, b in zip(one, two):
        key = "eval_loss" if "eval_loss" in a else "loss"
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5)
    s_one = json.load(open(os.path.join(default_dir, "summary.json")))
    s_two = json.load(open(os.path.join(multi_dir, "summary.json")))
    assert s_one["eval_predictions"] == s_two["eval_predictions"]
    np.testing.assert_allclose(s_two["eval_loss"], s_one["eval_loss"], rtol=1e-5)
    w_one, w_two = _weights_of(default_dir), _weights_of(multi_dir)
    assert w_one.keys() == w_two.keys() and len(w_one) == 44  # bert_test + MLM head
    for name, value in w_one.items():
        diff = np.linalg.norm(w_two[name] - value) / max(np.linalg.norm(value), 1e-3)
        assert diff < 1e-5, (name, diff)
    assert not [d for d in os.listdir(multi_dir) if d.startswith(".scratch")]


@pytest.mark.slow
def test_sigterm_on_one_worker_stops_both_with_a_checkpoint(mlm_data, tmp_path):
    """A preempted worker (SIGTERM to one process only): every worker saves at
    the same step and exits 75; the same command resumes."""
    import signal

    sys.path.insert(0, os.path.join(REPO_ROOT, "launch"))
    from local_cluster import free_ports, tf_configs

    experiment = tiny_experiment(mlm_data, steps=2000, steps_per_loop=2, checkpoint_every=1000,
                                 log_every=2)
    path = tmp_path / "experiment.json"
    path.write_text(experiment.to_json())
    model_dir = str(tmp_path / "run")
    procs = []
    try:
        for config in tf_configs(2, free_ports(2)):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT,
                       TF_CONFIG=json.dumps(config))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pretraining.train", "--strategy=multi_worker",
                 f"--experiment={path}", f"--model_dir={model_dir}"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        metrics = os.path.join(model_dir, "metrics.jsonl")
        deadline = time.time() + 180
        while time.time() < deadline and not os.path.exists(metrics):
            assert all(p.poll() is None for p in procs)
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGTERM)  # the non-chief worker only
        errors = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [75, 75], [e[-2000:] for e in errors]
    saved = [int(e.split("checkpoint saved at step ")[1].split()[0]) for e in errors]
    assert saved[0] == saved[1] and 0 < saved[0] < 2000
    step = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints")).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE")
    assert int(step) == saved[0]
