"""The benchmark reports' own logic: goal verdicts and the bf16 comparison.

Pure Python on made-up figures; no timing (the benchmarks themselves run in
`make bench`).
"""
import pytest

from bench import bf16_curve, run


def _curve(losses, start=10):
    return [{"step": start * (i + 1), "loss": loss} for i, loss in enumerate(losses)]


def test_bf16_curve_tracks_when_every_window_is_close_and_both_fall():
    fp32 = _curve([9.0, 8.0, 7.0, 6.5])
    bf16 = _curve([9.0, 8.1, 7.0, 6.4])
    result = bf16_curve.compare(fp32, bf16, tolerance=0.05)
    assert result["tracks"]
    assert result["gaps"] == pytest.approx([0.0, 0.1 / 8.0, 0.0, 0.1 / 6.5])
    assert result["max_rel_gap"] == pytest.approx(0.1 / 6.5)
    assert result["mean_rel_gap"] == pytest.approx((0.1 / 8.0 + 0.1 / 6.5) / 4)
    assert result["fp32_drop"] == pytest.approx(2.5)
    assert result["bf16_drop"] == pytest.approx(2.6)


def test_bf16_curve_one_window_off_is_not_tracking():
    fp32 = _curve([9.0, 8.0, 7.0, 6.5])
    bf16 = _curve([9.0, 8.0, 7.8, 6.5])  # 11% off at one window
    result = bf16_curve.compare(fp32, bf16, tolerance=0.05)
    assert not result["tracks"]
    assert result["max_rel_gap"] == pytest.approx(0.8 / 7.0)


def test_bf16_curve_flat_curves_do_not_count_as_tracking():
    flat = _curve([9.0, 8.9, 8.9, 8.8])  # identical, but nothing was learned
    assert not bf16_curve.compare(flat, flat, tolerance=0.05)["tracks"]


def test_bf16_curve_refuses_runs_logged_at_different_steps():
    with pytest.raises(ValueError, match="different steps"):
        bf16_curve.compare(_curve([9.0, 8.0]), _curve([9.0, 8.0], start=20), tolerance=0.05)


def _rec(item, value, rss):
    return {"item": item, "seq_per_s": {"median": value}, "maxrss_mib_time_v": rss,
            "mfu": 0.5, "cpu_pct": 150, "load1_before": 0.1}


def test_suite_table_reports_medians_ratios_and_missed_goals(capsys):
    recs = [_rec("ours_jit1", v, 4000) for v in (2.0, 2.2, 1.9)]
    recs += [_rec("hf_eager_gather", v, 3000) for v in (1.5, 1.6, 1.7)]
    recs += [_rec("kerashub_jit1", 1.0, 4400)]
    rows = run.table("M", recs, ["ours_jit1", "hf_eager_gather", "kerashub_jit1", "ours_gone"])
    out = capsys.readouterr().out
    assert rows["ours_jit1"]["median"] == 2.0 and rows["ours_jit1"]["n"] == 3
    assert rows["ours_gone"] is None and "| ours_gone | FAILED |" in out
    # Against the fastest peer (HF, median 1.6): 1.25x >= 1.15x; RSS 4000 vs 3000 MiB.
    assert "| ours_jit1 | 2.00 [1.90-2.20] | 1.25x |" in out
    assert "goal M: ours_jit1 1.25x vs hf_eager_gather (goal 1.15x): met" in out
    assert "goal M RSS: ours_jit1 4000 MiB vs lowest peer 3000 MiB: MISSED by 33%" in out


def test_suite_table_says_by_how_much_a_speed_goal_is_missed(capsys):
    recs = [_rec("ours_jit1", 26.0, 2000), _rec("hf_eager_gather", 25.0, 1300)]
    run.table("S", recs, ["ours_jit1", "hf_eager_gather"])
    out = capsys.readouterr().out
    # 1.04x of the peer; 1.3x would need 32.5 seq/s, 25% more than ours.
    assert "goal S: ours_jit1 1.04x vs hf_eager_gather (goal 1.3x): MISSED by 25% of our speed" in out


def test_input_suite_checks_issue_3_goal_per_cpu_second(capsys):
    def rec(item, masking, per_cpu):
        return {"item": item, "examples_per_s": {"median": 2 * per_cpu},
                "examples_per_cpu_s": {"median": per_cpu}, "masking": masking,
                "peak_rss_mib": 500, "cpu_pct": 180, "load1_before": 0.1}
    recs = [rec("input_static", "static", 90_000)]
    recs += [rec("input_dynamic", "dynamic", 60_000)]  # two cores: not the goal's measure
    recs += [rec("input_dynamic_b32_1core", "dynamic", v) for v in (20_000, 25_000, 30_000)]
    recs += [rec("input_dynamic_b256_1core", "dynamic", v) for v in (49_000, 52_000, 61_000)]
    run.table("input", recs, ["input_static", "input_dynamic", "input_dynamic_b32_1core",
                              "input_dynamic_b256_1core"])
    out = capsys.readouterr().out
    assert "goal issue 3: input_dynamic_b256_1core 52,000" in out and out.count("): met") == 1
    assert "goal issue 3: input_dynamic_b32_1core 25,000" in out and "MISSED by 100%" in out
    assert "goal issue 3: input_static" not in out  # static masking is not the goal
    assert "goal issue 3: input_dynamic " not in out


def test_rounds_alternate_the_order_of_the_items(tmp_path, monkeypatch):
    """A B C, C B A, A B C: a machine that speeds up or slows down during a
    round favours no item."""
    ran = []

    def fake_run_one(name, argv, rnd):
        ran.append((rnd, name))
        return {"item": name, "round": rnd, "rc": 0}

    monkeypatch.setattr(run.run_peers, "run_one", fake_run_one)
    items = {"a": ["x"], "b": ["y"], "c": ["z"]}
    recs = run.run_peers.run_rounds(items, 3, str(tmp_path / "out.jsonl"), lambda rec: "")
    assert [name for _, name in ran] == list("abccbaabc")
    assert [r["round"] for r in recs] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 9


def test_suite_m_times_at_least_six_steps_per_process():
    items = run.items_for("M", "py", "tp", "fp", blocks=8)
    for name in ("ours_jit1", "kerashub_jit1"):
        argv = items[name]
        assert argv[argv.index("--blocks") + 1] == "6", name
