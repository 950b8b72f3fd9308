"""bench/time_to_quality.py's own logic on made-up figures: interpolation,
the three figures and their verdicts, the recipe mapping, the training clock.

No training here (the suite itself runs in `make bench SUITE=quality`).
"""
import json
import sys

import pytest

from bench import run, time_to_quality as ttq


def _points(*rows):
    """(step, accuracy, wall_s[, cpu_s]) rows -> eval points."""
    return [{"step": r[0], "eval_masked_lm_accuracy": r[1], "eval_loss": 9.0 - 10 * r[1],
             "wall_s": r[2], "cpu_s": r[3] if len(r) > 3 else 2 * r[2]} for r in rows]


def test_time_to_reach_interpolates_between_eval_points():
    points = _points((0, 0.0, 0.0), (50, 0.10, 10.0), (100, 0.20, 30.0))
    # 0.15 is half way from 0.10 (10 s) to 0.20 (30 s): 20 s.
    assert ttq.time_to_reach(points, 0.15) == pytest.approx(20.0)
    assert ttq.time_to_reach(points, 0.15, "cpu_s") == pytest.approx(40.0)
    assert ttq.time_to_reach(points, 0.10) == pytest.approx(10.0)  # an eval point itself
    assert ttq.time_to_reach(points, 0.0) == 0.0
    assert ttq.time_to_reach(points, 0.2001) is None  # never reached
    # The first crossing counts, not a later one after a dip; order of the list is free.
    dip = _points((100, 0.25, 30.0), (0, 0.0, 0.0), (50, 0.20, 10.0), (75, 0.10, 20.0))
    assert ttq.time_to_reach(dip, 0.15) == pytest.approx(7.5)


def _runs(hf=((0.20, 100.0), (0.22, 110.0)), ours=((0.215, 0.22, 80.0), (0.205, 0.22, 84.0)),
          best=((0.25, 0.22, 40.0),)):
    """HF runs (final acc, wall s); ours and best (final acc, acc at 0.8 of the
    wall, wall s): curves from 0 through (0.8 wall, mid acc) to the final point."""
    runs = {}
    for i, (acc, wall) in enumerate(hf):
        runs[f"hf_s{i}"] = {"kind": "hf", "seed": i,
                            "points": _points((0, 0.0, 0.0), (1000, acc, wall))}
    for kind, rows in (("ours", ours), ("best", best)):
        for i, (acc, mid, wall) in enumerate(rows):
            runs[f"{kind}_s{i}"] = {"kind": kind, "seed": i, "points": _points(
                (0, 0.0, 0.0), (800, mid, 0.8 * wall), (1000, acc, wall))}
    return runs


def test_figures_met_with_hand_computed_values():
    figs = ttq.figures(_runs())
    # HF: target = mean(0.20, 0.22) = 0.21, time = mean(100, 110) = 105 s.
    assert figs["target"] == pytest.approx(0.21)
    assert figs["hf_wall_s"] == pytest.approx(105.0)
    parity = figs["parity"]
    # Ours: mean(0.215, 0.205) = 0.21; spreads ours 0.01, HF 0.02 -> 0.02.
    assert parity["diff"] == pytest.approx(0.0)
    assert parity["spread"] == pytest.approx(0.02)
    assert parity["goal"] == pytest.approx(0.19)
    assert parity["verdict"] == "met"
    # Both ours runs reach 0.21 on the way from (0 s, 0) to (0.8 wall, 0.22):
    # at 0.21/0.22 of 64 s and of 67.2 s; mean 62.62 s, / 105 s = 0.596 <= 1/1.3.
    speed = figs["speed"]
    assert speed["wall_s"] == pytest.approx(0.21 / 0.22 * 65.6)
    assert speed["ratio"] == pytest.approx(0.21 / 0.22 * 65.6 / 105.0)
    assert speed["verdict"] == "met"
    # Best: 0.21/0.22 of 32 s = 30.5 s, / 105 s = 0.29 <= 0.5.
    assert figs["best"]["ratio"] == pytest.approx(0.21 / 0.22 * 32.0 / 105.0)
    assert figs["best"]["verdict"] == "met"
    assert figs["time_to_target"]["hf_s0"]["wall_s"] is None  # 0.20 < 0.21: never
    assert figs["time_to_target"]["hf_s1"]["wall_s"] == pytest.approx(110 * 0.21 / 0.22)


def test_figures_say_by_how_much_each_goal_is_missed():
    runs = _runs(ours=((0.17, 0.16, 80.0), (0.19, 0.18, 90.0)),
                 best=((0.22, 0.22, 70.0),))
    figs = ttq.figures(runs)
    # Parity: ours 0.18 vs goal 0.21 - max(0.02, 0.02) = 0.19: 0.19/0.18 - 1 = 5.6%.
    assert figs["parity"]["verdict"] == "MISSED by 6%"
    # Ours never reaches 0.21.
    assert figs["speed"]["ratio"] is None
    assert figs["speed"]["verdict"] == "MISSED (HF's final accuracy never reached)"
    # Best reaches 0.21 at 0.21/0.22 of 56 s = 53.45 s: / 105 = 0.509 > 0.5, 2% slow.
    assert figs["best"]["ratio"] == pytest.approx(0.21 / 0.22 * 56.0 / 105.0)
    assert figs["best"]["verdict"] == "MISSED by 2%"
    # Speed at equal recipe just over 1/1.3: 0.8 -> 0.8 * 1.3 - 1 = 4%.
    assert ttq.verdict_at_most(0.8, ttq.SPEED_GOAL) == "MISSED by 4%"
    assert ttq.verdict_at_most(0.76, ttq.SPEED_GOAL) == "met"
    assert ttq.verdict_at_most(0.5015, ttq.BEST_GOAL) == "MISSED by 0.3%"  # not "by 0%"
    assert ttq.verdict_at_least(0.099, 0.1) == "MISSED by 1%"


def test_failed_runs_are_left_out_and_reported():
    runs = _runs()
    runs["ours_s1"]["points"] = []
    runs["ours_s1"]["rc"] = 1
    figs = ttq.figures(runs)
    assert figs["parity"]["ours_final"] == [0.215]  # the one run left
    text = ttq.report(runs, figs, {"best": "reference + x"})
    assert "| ours_s1 | FAILED (rc=1) |" in text
    assert ttq.figures({"ours_s0": runs["ours_s0"]}) == {"parity": None, "speed": None,
                                                        "best": None}


def test_report_prints_the_three_goals():
    runs = _runs(ours=((0.225, 0.23, 80.0), (0.215, 0.23, 84.0)))
    text = ttq.report(runs, ttq.figures(runs), {"best": "reference + y"})
    assert "goal 1 (learning parity): ours_ref 22.00% - HF 21.00% = +1.00 points" in text
    assert "seed spread ours 1.00, HF 2.00 points" in text
    assert "(goal ours >= HF - spread = 19.00%): met" in text
    # 0.21/0.23 of (64 + 67.2)/2 s = 59.9 s.
    assert ("goal 2 (speed at equal recipe: ours_ref wall time to HF's final accuracy): "
            "60 s / 105 s = 0.57x HF's time (CPU 0.57x) (goal <= 1/1.3 = 0.77): met") in text
    assert "goal 3 (best recipe: best wall time to HF's final accuracy): 31 s / 105 s" in text
    assert "| hf_s0 | 20.00% |" in text and "| not reached |" in text
    assert "recipe best: reference + y" in text


def test_recipe_maps_field_by_field_to_our_experiment():
    """Every HF flag of the reference recipe lands in the matching field of our
    resolved experiment (values unlike the demo's, so none comes from it)."""
    from pretraining.config import ExperimentConfig

    recipe = ttq.Recipe(steps=700, batch=16, learning_rate=7e-4, warmup=35,
                        weight_decay=0.02, clip=0.5, dropout=0.05, eval_every=70)
    model = ttq.model_config("S")
    hf = recipe.hf_flags(model, seed=3)
    flag = {hf[i]: hf[i + 1] for i in range(0, len(hf), 2)}
    cfg = ExperimentConfig.from_json(ttq.DEMO_EXPERIMENT,
                                     overrides=recipe.ours_overrides(model, 3, jit=False))
    m, o, t = cfg.model, cfg.optimizer, cfg.train
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.intermediate_size) \
        == (flag["--layers"], flag["--hidden"], flag["--heads"], flag["--inter"]) \
        == (4, 256, 4, 1024)
    assert (m.vocab_size, m.max_position_embeddings, m.type_vocab_size) == \
        (flag["--vocab"], flag["--max_pos"], flag["--type_vocab"]) == (8000, 128, 2)
    assert m.hidden_dropout_prob == m.attention_probs_dropout_prob == flag["--dropout"] == 0.05
    assert m.hidden_act == "gelu" and m.initializer_range == 0.02  # tanh GELU = gelu_new
    assert (o.name, o.schedule, o.end_learning_rate, o.bias_correction) == \
        ("adamw", "linear", 0.0, True)
    assert (o.learning_rate, o.warmup_steps, o.weight_decay, o.clip_norm) == \
        (flag["--lr"], flag["--warmup"], flag["--wd"], flag["--clip"]) == (7e-4, 35, 0.02, 0.5)
    assert (o.beta_1, o.beta_2, o.epsilon) == (0.9, 0.999, 1e-6)  # torch AdamW in the peer
    assert o.weight_decay_min_rank == 2 and o.weight_decay_exclude == []  # ndim >= 2 only
    assert (o.ema_decay, o.lookahead_steps) == (0.0, 0)
    assert (t.steps, t.seed, t.eval_every) == (flag["--steps"], flag["--seed"],
                                               flag["--eval_every"]) == (700, 3, 70)
    assert t.global_batch_size == 16 and t.gradient_accumulation_steps == 1
    assert t.jit_compile is False and t.checkpoint_every == 700
    assert flag["--threads"] == ttq.THREADS
    # Warmup longer than the run: ours caps it at train.steps, so the peer gets the cap.
    short = ttq.Recipe(steps=20, warmup=100).hf_flags(model, seed=0)
    assert short[short.index("--warmup") + 1] == 20


def test_best_build_flags_are_typed_by_build_mlm():
    assert ttq.parse_build_flags(["masked_lm_prob=0.3", "max_predictions_per_seq=40",
                                  "whole_word_masking=false"]) == {
        "masked_lm_prob": 0.3, "max_predictions_per_seq": 40, "whole_word_masking": False}
    with pytest.raises(ValueError, match="NAME one of"):
        ttq.parse_build_flags(["output_dir=/x"])
    with pytest.raises(ValueError, match="max_predictions_per_seq must be a int"):
        ttq.parse_build_flags(["max_predictions_per_seq=lots"])


def test_train_clock_excludes_paused_time():
    now = {"wall": 100.0, "cpu": 10.0}
    clock = ttq.TrainClock(wall=lambda: now["wall"], cpu=lambda: now["cpu"])
    now.update(wall=105.0, cpu=18.0)  # 5 s of training (8 CPU s)
    clock.pause()  # an evaluation: 20 s, 30 CPU s
    now.update(wall=125.0, cpu=48.0)
    assert clock.now() == (5.0, 8.0)  # frozen while paused
    clock.resume()
    clock.resume()  # a second resume changes nothing
    now.update(wall=128.0, cpu=52.0)  # 3 s more training
    assert clock.now() == (8.0, 12.0)
    clock.pause()
    clock.pause()  # the first pause counts
    now.update(wall=200.0, cpu=99.0)
    clock.resume()
    assert clock.now() == (8.0, 12.0)


def test_read_points_keeps_the_evaluations(tmp_path):
    rows = [{"step": 0, "eval_masked_lm_accuracy": 0.0, "wall_s": 0, "cpu_s": 0},
            {"step": 50, "loss": 7.0, "masked_lm_accuracy": 0.05, "wall_s": 5, "cpu_s": 9},
            {"step": 50, "eval_masked_lm_accuracy": 0.06, "wall_s": 5, "cpu_s": 9}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p["step"] for p in ttq.read_points(str(tmp_path))] == [0, 50]
    assert ttq.read_points(str(tmp_path / "missing")) == []


def test_bad_flags_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as e:
        ttq.parse_args(["--best_override", "dropout=0"])
    assert e.value.code == 2
    assert "--best_override must look like section.field=value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ttq.parse_args(["--only", "hf,mine"])
    assert "--only takes hf, ours, best" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ttq.parse_args(["--only", "ours", "--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert ttq.parse_args(["--only", "ours"]).best_build_flag is None  # the defaults
    assert ttq.parse_args(["--only", "ours", "--best_build_flag", "none"]).best_build_flag == []


def test_plot_without_matplotlib_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(SystemExit) as e:
        ttq.parse_args(["--only", "ours", "--plot", "/tmp/x.png"])
    assert e.value.code == 2
    assert "--plot needs matplotlib, which is not installed" in capsys.readouterr().err


def test_plot_draws_every_run(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    runs = _runs()
    ttq.plot(runs, ttq.figures(runs), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))


def test_bench_run_forwards_its_arguments_to_the_quality_suite(monkeypatch):
    calls = []
    monkeypatch.setattr(run, "run_child", calls.append)
    run.main(["--suite", "quality", "--python", "py", "--steps", "100", "--only", "ours"])
    assert calls == [["py", "-m", "bench.time_to_quality", "--only", "ours", "--steps", "100"]]
    with pytest.raises(SystemExit):
        run.main(["--suite", "S", "--steps", "100"])  # only quality takes its flags


def test_run_key_covers_our_spec(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"overrides": ["train.steps=10"]}))
    argv = ["py", "-m", "bench.time_to_quality", "--ours_child", str(spec)]
    key = ttq.run_key(argv)
    assert key == {"argv": argv, "spec": {"overrides": ["train.steps=10"]}}
    spec.write_text(json.dumps({"overrides": ["train.steps=20"]}))
    assert ttq.run_key(argv) != key  # same command, other recipe: not reused
    assert ttq.run_key(["torch", "peer.py", "--seed", "0"]) == {
        "argv": ["torch", "peer.py", "--seed", "0"]}
