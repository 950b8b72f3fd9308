"""The CLIs' CPU defaults: set where unset, never over a user's value."""

from pretraining import cpu_env


def test_sets_both_defaults_in_an_empty_environment():
    env = {}
    assert cpu_env.apply_defaults(env, tf_version=(2, 21))
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1",
                   "XLA_FLAGS": "--xla_cpu_use_onednn=true"}


def test_no_xla_onednn_flag_before_tensorflow_2_21():
    env = {}
    assert cpu_env.apply_defaults(env, tf_version=(2, 20))
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1"}


def test_reads_the_installed_tensorflow_version_without_importing_it():
    import tensorflow as tf
    major, minor = (int(p) for p in tf.__version__.split(".")[:2])
    assert cpu_env.installed_tensorflow_version() == (major, minor)


def test_keeps_the_users_values_and_other_xla_flags():
    env = {"TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    cpu_env.apply_defaults(env, tf_version=(2, 21))
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_use_onednn=true"
    env = {"XLA_FLAGS": "--xla_cpu_use_onednn=false"}
    cpu_env.apply_defaults(env)
    assert env["XLA_FLAGS"] == "--xla_cpu_use_onednn=false"


def test_too_late_once_tensorflow_is_loaded(monkeypatch):
    import tensorflow  # noqa: F401  (the test session has loaded it already)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert not cpu_env.apply_defaults()
    import os
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
