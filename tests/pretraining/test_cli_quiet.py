"""The CLIs of both packages hide TensorFlow's noise unless --verbosity=1: its
C++ log lines (TF_CPP_MIN_LOG_LEVEL=3 where the user has not set it) and the
INFO lines its Python modules log through absl or `tensorflow`."""

import logging
import os
import subprocess
import sys

import pytest

from pretraining import cli
from tests.conftest import REPO_ROOT

TF_MODULE = os.path.join("site-packages", "tensorflow", "python", "checkpoint",
                         "functional_saver.py")


@pytest.fixture
def clean_filters():
    yield
    for name in ("absl", "tensorflow"):
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, cli._TensorFlowInfoFilter)]:
            logger.removeFilter(f)


def _record(level, pathname):
    return logging.LogRecord("absl", level, pathname, 1, "Sharding callback duration", (), None)


def test_quiet_sets_the_level_unless_the_user_did(clean_filters):
    env = {}
    assert cli.quiet_tensorflow(0, env) and env == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    env = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    cli.quiet_tensorflow(0, env)
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "1"}  # the user's choice wins
    env = {}
    assert not cli.quiet_tensorflow(1, env) and env == {}  # --verbosity=1 shows all


def test_filter_drops_tensorflow_info_only(clean_filters):
    cli.quiet_tensorflow(0, {})
    logger = logging.getLogger("absl")
    assert not logger.filter(_record(logging.INFO, os.path.join("/venv", TF_MODULE)))
    assert logger.filter(_record(logging.WARNING, os.path.join("/venv", TF_MODULE)))
    assert logger.filter(_record(logging.INFO, os.path.join(REPO_ROOT, "pretraining",
                                                            "trainer.py")))
    cli.quiet_tensorflow(0, {})  # a second call adds no second filter
    assert sum(isinstance(f, cli._TensorFlowInfoFilter) for f in logger.filters) == 1


_PROBE = """import sys
sys.argv[0] = '-m'  # as python -m does: importing pretraining leaves TensorFlow unloaded
from {package} import cli
sys.argv[0] = 'probe'
def main(argv):
    import tensorflow as tf
    from absl import logging
    logging.info('probe: our own line')
    tf.constant(1.0) + 1.0
cli.run(main)
"""


def _probe(package, *flags):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO_ROOT
    return subprocess.run([sys.executable, "-c", _PROBE.format(package=package), *flags],
                          cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("package", ["pretraining", "data_pipeline"])
def test_cli_hides_tensorflow_cpp_lines_unless_verbose(package):
    quiet, verbose = _probe(package), _probe(package, "--verbosity=1")
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "probe: our own line" in quiet.stderr and "probe: our own line" in verbose.stderr
    # TensorFlow's C++ lines at its import (e.g. cpu_feature_guard.cc) come
    # through absl's C++ log: 'I<date> ... file.cc:line]'.
    def cpp_lines(text):
        return [line for line in text.splitlines() if ".cc:" in line and "port.cc" not in line]
    assert cpp_lines(quiet.stderr) == [], quiet.stderr
    if not cpp_lines(verbose.stderr):
        pytest.skip("this TensorFlow build logs no C++ line at import here (nothing to hide)")
