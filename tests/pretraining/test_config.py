import json

import pytest

from pretraining.config import BertConfig, ExperimentConfig, resolve_path, to_google_dict


def test_bert_config_round_trip(tmp_path, repo_root):
    config = BertConfig.from_json(f"{repo_root}/configs/models/bert_base.json")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert BertConfig.from_json(str(path)) == config
    assert to_google_dict(config) == json.loads(
        open(f"{repo_root}/configs/models/bert_base.json").read())


@pytest.mark.parametrize("name", ["bert_tiny", "bert_mini", "bert_small", "bert_medium",
                                  "bert_base", "bert_large", "bert_test", "bert_demo"])
def test_shipped_model_configs_load(name, repo_root):
    config = BertConfig.from_json(f"{repo_root}/configs/models/{name}.json")
    assert config.hidden_size % config.num_attention_heads == 0


def test_google_extra_keys_tolerated():
    config = BertConfig.from_dict({"vocab_size": 21128, "directionality": "bidi",
                                   "pooler_type": "first_token_transform"})
    assert config.vocab_size == 21128


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"hidden_sise"):
        BertConfig.from_dict({"vocab_size": 10, "hidden_sise": 8})


def test_inconsistent_heads_name_both_values():
    with pytest.raises(ValueError, match=r"hidden_size=100, num_attention_heads=3"):
        BertConfig(vocab_size=10, hidden_size=100, num_attention_heads=3)


def test_wrong_type_is_named():
    with pytest.raises(TypeError, match=r"model.hidden_size"):
        BertConfig.from_dict({"vocab_size": 10, "hidden_size": "768"}, "model")


def test_dropout_out_of_range():
    with pytest.raises(ValueError, match="hidden_dropout_prob=1.5"):
        BertConfig(vocab_size=10, hidden_dropout_prob=1.5)


def _experiment(**sections):
    data = {"model": "configs/models/bert_test.json", "data": {"train_dir": "x"}}
    data.update(sections)
    return data


def test_experiment_round_trip_and_overrides(repo_root):
    experiment = ExperimentConfig.from_dict(
        _experiment(), overrides=["train.steps=7", "optimizer.learning_rate=0.5",
                                  "train.jit_compile=true", "model.hidden_dropout_prob=0"])
    assert experiment.train.steps == 7
    assert experiment.optimizer.learning_rate == 0.5
    assert experiment.train.jit_compile is True
    assert experiment.model.hidden_dropout_prob == 0.0
    again = ExperimentConfig.from_dict(json.loads(experiment.to_json()))
    assert again == experiment


def test_demo_experiment_loads_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped file is found by name
    experiment = ExperimentConfig.from_json("demo")
    assert experiment.model.vocab_size == 8000
    # demo.json says "./runs/demo/data/train": the current directory.
    assert experiment.data.train_dir == f"{tmp_path}/runs/demo/data/train"
    assert ExperimentConfig.from_json("smoke_cpu.json").model == experiment.model


def test_relative_paths_resolve_against_the_experiment_file(tmp_path, monkeypatch):
    exp_dir, cwd = tmp_path / "exp", tmp_path / "work"
    exp_dir.mkdir(), cwd.mkdir()
    (exp_dir / "tiny.json").write_text(json.dumps({"vocab_size": 50, "hidden_size": 8,
                                                   "num_attention_heads": 2}))
    (exp_dir / "e.json").write_text(json.dumps({
        "model": "tiny.json",
        "data": {"train_dir": "records/train", "eval_dir": "./records/eval"},
        "train": {"init_checkpoint": "gs://bucket/run"}}))
    monkeypatch.chdir(cwd)
    experiment = ExperimentConfig.from_json(str(exp_dir / "e.json"),
                                            overrides=["data.eval_dir=mine/eval"])
    assert experiment.model.vocab_size == 50
    assert experiment.data.train_dir == str(exp_dir / "records" / "train")  # the file's dir
    assert experiment.data.eval_dir == str(cwd / "mine" / "eval")  # a flag: the current dir
    assert experiment.train.init_checkpoint == "gs://bucket/run"  # URLs as written
    # "./" inside the file means the current directory.
    again = ExperimentConfig.from_json(str(exp_dir / "e.json"))
    assert again.data.eval_dir == str(cwd / "records" / "eval")
    # A shipped model by name.
    (exp_dir / "e2.json").write_text(json.dumps({"model": "bert_tiny",
                                                 "data": {"train_dir": "t"}}))
    assert ExperimentConfig.from_json(str(exp_dir / "e2.json")).model.hidden_size == 128


def test_resolve_path_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("a/b", "/base") == "/base/a/b"
    assert resolve_path("../m.json", "/base/exp") == "/base/m.json"
    assert resolve_path("./a", "/base") == f"{tmp_path}/a"
    assert resolve_path("a") == f"{tmp_path}/a"
    assert resolve_path("/abs/x", "/base") == "/abs/x"
    assert resolve_path("gs://b/x", "/base") == "gs://b/x"
    assert resolve_path("") == ""


def test_unknown_experiment_or_model_names_the_value_and_the_shipped_names(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"No experiment config 'demoo'.*demo, .*smoke_cpu"):
        ExperimentConfig.from_json("demoo")
    (tmp_path / "e.json").write_text(json.dumps({"model": "configs/models/bert_demo.json",
                                                 "data": {"train_dir": "t"}}))
    with pytest.raises(ValueError, match=rf"{tmp_path}/configs/models/bert_demo.json does "
                                         r"not exist.*experiment file's directory.*bert_base"):
        ExperimentConfig.from_json("e.json")


@pytest.mark.parametrize("override, message", [
    ("train.steps=abc", r"train.steps must be of type int. Received: 'abc'"),
    ("train.stepz=3", r"`train` has no field 'stepz'"),
    ("trian.steps=3", r"unknown section 'trian'"),
    ("steps", r"section.field=value"),
    ("train.steps=0", r"`steps` must be > 0. Received: steps=0"),
])
def test_bad_overrides(override, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ExperimentConfig.from_dict(_experiment(), overrides=[override])


def test_unknown_section_key():
    with pytest.raises(ValueError, match=r"Unknown key\(s\) in `train`: \['epochs'\]"):
        ExperimentConfig.from_dict(_experiment(train={"epochs": 3}))


def test_missing_model_file():
    with pytest.raises(ValueError, match="nope.json"):
        ExperimentConfig.from_dict(_experiment(model="configs/models/nope.json"))


@pytest.mark.parametrize("fields, message", [
    ({"attention_mask_type": "diagonal"}, "attention_mask_type='diagonal'"),
    ({"attention_mask_type": "prefix"}, "prefix_length=0"),
    ({"condition_hidden_size": 8}, "condition_size=0"),
])
def test_model_variant_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(vocab_size=10, **fields)


@pytest.mark.parametrize("name, task", [("sample_lm", "lm"), ("sample_seq2seq", "seq2seq")])
def test_task_example_experiments_load(repo_root, name, task):
    experiment = ExperimentConfig.from_json(f"{repo_root}/configs/experiments/{name}.json")
    assert experiment.task == task
    assert experiment.model.vocab_size == 8000  # the demo's tokenizer
