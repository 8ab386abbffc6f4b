"""The `riskcurves` command: errors are one line with exit status 2 naming the option,
validation before any solve, help for every option, demo/threshold/compare outputs."""

import argparse
import io
import json
import os
import re
import subprocess
import sys

import pytest

import riskcurves as rc
from riskcurves import cli
from riskcurves.cli import build_parser, main

_SMALL = ["--d", "60", "--steps", "20", "--n-runs", "2"]


@pytest.mark.parametrize("argv,needle", [
    (["compare", "--lr", "-0.1"], "`lr` must be a finite float > 0"),
    (["compare", "--batch", "0"], "`batch` must be an integer >= 1"),
    (["compare", "--optimizer", "adam"], "--optimizer must be one of"),
    (["compare", "--noise", "cauchy:1"], "--noise must be one of"),
    (["compare", "--noise", "gaussian:abc"], "--noise must be one of"),
    (["compare", "--noise", "gaussian:-1"], "`sigma`"),
    (["compare", "--d", "0"], "`d` must be an integer >= 1"),
    (["compare", "--batch", "two"], "--batch"),
    (["frobnicate"], "invalid choice"),
], ids=["lr", "batch0", "optimizer", "noise-law", "noise-value", "noise-sigma", "d", "batch-type",
        "command"])
def test_bad_input_is_one_line(argv, needle, capsys):
    code = main(argv[:1] + _SMALL + argv[1:] if argv[0] == "compare" else argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code} for {argv}; stderr={err!r}"
    assert len(lines) == 1, f"want one error line for {argv}, got {lines}"
    assert lines[0].startswith("riskcurves: error: "), lines[0]
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert out == "", f"nothing on stdout expected, got {out!r}"


def test_divergent_lr_reports_threshold(capsys):
    argv = ["compare"] + _SMALL + ["--lr", "5", "--batch", "2", "--alpha", "1.5", "--beta", "0.5"]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    thr = rc.theory.stability_threshold(rc.SGD(5.0, 2), rc.PowerLaw(60, 1.5, 0.5))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "divergent" in err and f"{thr:.6g}" in err, f"threshold {thr:.6g} not in {err!r}"


def test_threshold_command(capsys):
    code = main(["threshold", "--d", "300", "--alpha", "0.8", "--beta", "0.5", "--batch", "3"])
    out = capsys.readouterr().out
    thr = rc.theory.stability_threshold(rc.SGD(1.0, 3), rc.PowerLaw(300, 0.8, 0.5))
    assert code == 0
    assert "Gaussian σ=0.1" in out, out  # the noise law is part of the problem stated
    m = re.search(r"lr < ([0-9.eE+-]+)", out)
    assert m and abs(float(m.group(1)) / thr - 1) < 1e-5, f"printed {out!r}, threshold {thr}"


def test_threshold_subprocess():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-m", "riskcurves.cli", "threshold", "--d", "100",
                          "--batch", "2"], capture_output=True, text=True, env=env, timeout=900)
    thr = rc.theory.stability_threshold(rc.SGD(1.0, 2), rc.PowerLaw(100, 1.5, 0.5))
    assert res.returncode == 0, res.stderr
    assert f"lr < {thr:.6g}" in res.stdout, f"{res.stdout!r} vs threshold {thr:.6g}"


def test_demo_writes_figure_and_report(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--only", "sgd", "--d", "200", "--n-runs", "8", "--steps", "200",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (out / "demo.png").stat().st_size > 10_000
    report = json.loads((out / "demo.json").read_text())
    assert report["d_requested"] == 200 and report["n_runs"] == 8
    (row,) = report["cases"]
    assert row["case"] == "sgd" and row["optimizer"]["optimizer"] == "sgd"
    assert row["d"] == 200 and row["noise"] == "Gaussian σ=0.1", row
    err = row["max_rel_err"]
    # 8 runs at d = 200 (α = 1.5): the mean is noisy, but a wrong ODE would be far off
    assert 0 <= err < 0.5, f"demo max_rel_err {err:.3f} (d=200, 8 runs, tol 0.5)"
    assert "max rel err" in printed
    # --only with an unknown case is a one-line error
    assert main(["demo", "--only", "nope", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("riskcurves: error: --only nope")


# ---- issue 15: one test per CLI fix ----------------------------------------------------
def _subparsers(parser):
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_option_has_help_and_shows_its_default(capsys):
    subs = _subparsers(build_parser())
    assert set(subs) == {"demo", "compare", "threshold", "phase-diagram", "scaling-law"}
    for name, sp in subs.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            opt = action.option_strings[0]
            assert action.help and len(action.help) > 8, f"{name} {opt}: no help text"
        assert main([name, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            opt = action.option_strings[0]
            assert opt in text, f"{name} --help does not list {opt}"
            d = action.default
            if d is not None and d is not False:
                shown = " ".join(str(x) for x in d) if isinstance(d, list) else str(d)
                assert f"(default: {shown})" in text, f"{name} {opt}: default {d} not shown"
            else:  # None: the help says what happens without the option
                assert "default" in action.help or action.default is False or \
                    "override" in action.help or "excludes" in action.help or \
                    "only these" in action.help or "replot" in action.help or \
                    "explicit" in action.help, f"{name} {opt}: None default not explained"


def test_threshold_refuses_lr():
    """`threshold` computes the step size: `--lr` is refused instead of ignored."""
    assert main(["threshold", "--d", "50", "--lr", "3"]) == 2


@pytest.mark.parametrize("optimizer", ["line_search", "signsgd", "adagrad_norm", "clipped_sgd"])
def test_threshold_says_when_there_is_none(optimizer, capsys):
    code = main(["threshold", "--d", "50", "--optimizer", optimizer])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{optimizer} has no step-size stability threshold" in out, out
    assert "inf" not in out.replace("infinite", ""), out


@pytest.mark.parametrize("noise,needle", [
    ("gaussian", "gaussian needs 1 number: gaussian:SIGMA"),
    ("studentt:3", "studentt needs 2 numbers"),
    ("mixture:0.1,10", "mixture needs 3 numbers"),
    ("none:1", "`none` takes no parameter"),
])
def test_noise_needs_every_parameter(noise, needle, capsys, monkeypatch):
    """`--noise gaussian` used to mean σ = 0.1 silently."""
    monkeypatch.setattr(rc, "solve_ode", _no_solve)
    code = main(["compare", *_SMALL, "--noise", noise])
    err = capsys.readouterr().err
    assert code == 2 and "--noise" in err and needle in err, err


def _no_solve(*args, **kwargs):
    raise AssertionError("a solve started before the input was validated")


@pytest.mark.parametrize("argv,needle", [
    (["compare", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["compare", "--n-runs", "0"], "--n-runs must be an integer >= 2, got 0"),
    (["compare", "--n-runs", "1"], "--n-runs must be an integer >= 2, got 1"),
    (["demo", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["demo", "--n-runs", "0"], "--n-runs must be an integer >= 2, got 0"),
    (["compare", "--lr", "50"], "--lr 50: "),
], ids=["steps", "n-runs0", "n-runs1", "demo-steps", "demo-n-runs", "divergent-lr"])
def test_validation_before_any_solve(argv, needle, capsys, monkeypatch, tmp_path):
    """Bad sizes are refused before the ODE runs (`--n-runs 0` used to fail after it),
    and name the user's option (`--steps 0` used to report the internal `n_max`)."""
    monkeypatch.setattr(rc, "solve_ode", _no_solve)
    monkeypatch.setattr(rc, "simulate", _no_solve)
    code = main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "n_max" not in err, err


@pytest.mark.parametrize("argv,option", [
    (["--lr", "-0.1"], "--lr -0.1: "), (["--batch", "0"], "--batch 0: "),
    (["--d", "0"], "--d 0: "), (["--optimizer", "clipped_sgd", "--clip", "-1"], "--clip -1.0: "),
    (["--optimizer", "adagrad_norm", "--b0", "0"], "--b0 0.0: "),
    (["--noise", "gaussian:-1"], "--noise 'gaussian:-1': "),
])
def test_errors_name_the_users_option(argv, option, capsys, monkeypatch):
    monkeypatch.setattr(rc, "solve_ode", _no_solve)
    assert main(["compare", *_SMALL, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"riskcurves: error: {option}"), err


def test_compare_file_names_encode_the_parameters(tmp_path, capsys):
    """`compare` used to overwrite compare_<opt>.png whatever the parameters."""
    parser = build_parser()
    base = ["compare", "--d", "40"]
    variants = [[], ["--lr", "0.3"], ["--batch", "2"], ["--alpha", "1.2"], ["--beta", "1"],
                ["--noise", "studentt:3,0.1"], ["--rotate"], ["--seed", "1"], ["--steps", "50"],
                ["--n-runs", "4"], ["--spectrum", "flat"], ["--optimizer", "signsgd"],
                ["--optimizer", "clipped_sgd", "--clip", "0.5"]]
    stems = set()
    for v in variants:
        a = parser.parse_args(base + v)
        stems.add(cli.compare_stem(a, cli._problem_from_args(a), cli._optimizer_from_args(a)))
    assert len(stems) == len(variants), sorted(stems)
    code = main(["compare", "--d", "40", "--steps", "10", "--n-runs", "2", "--lr", "0.3",
                 "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    name = "compare_sgd_powerlaw_d40_a1.5_b0.5_gaussian0.1_lr0.3_B1_k10_n2_s0"
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert json.loads((tmp_path / f"{name}.json").read_text())["row"]["noise"] == \
        "Gaussian σ=0.1"


def test_phase_diagram_file_name_encodes_the_grid(tmp_path, capsys):
    src = os.path.join(os.path.dirname(__file__), "..", "docs", "theory", "phases.json")
    assert main(["phase-diagram", "--from-json", src, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (png,) = [p.name for p in tmp_path.glob("phase_diagram_*.png")]
    assert re.fullmatch(r"phase_diagram_(d\d+_B\d+_r[0-9.]+_s[0-9.]+_?)+\.png", png), png
    assert png in out


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal(monkeypatch):
    """tqdm bars go to standard error when it is a terminal, and nothing is drawn
    otherwise; ODE solves get `progress=True` on a terminal."""
    seen = {}

    def fake_solve(problem, opt, ks, progress=False, **kw):
        seen["progress"] = progress
        raise ValueError("stop here")

    monkeypatch.setattr(rc, "solve_ode", fake_solve)
    for tty in (False, True):
        err = _Tty() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        with cli._working("simulating 3 runs"):
            import time
            time.sleep(0.7)
        drawn = err.getvalue()
        assert ("simulating 3 runs" in drawn) == tty, (tty, drawn)
        assert main(["compare", *_SMALL]) == 2
        assert seen["progress"] is tty


def test_demo_layout_has_no_empty_panel():
    for n in (1, 2, 3, 4, 6, 8, 9, 12):
        r, c = cli._demo_layout(n)
        assert r * c == n, (n, r, c)
    assert cli._demo_layout(len(cli.DEMO_CASES)) == (2, 4)


@pytest.mark.parametrize("argv,needle", [
    (["--clip", "0.5"], "--clip applies to --optimizer clipped_sgd / clipping only"),
    (["--b0", "1"], "--b0 applies to --optimizer adagrad_norm only"),
    (["--m", "20"], "--m applies to --optimizer signsvd / muon / matrix_signsgd only"),
    (["--optimizer", "line_search", "--lr", "0.1"], "--lr does not apply to --optimizer "
                                                    "line_search"),
    (["--spectrum", "flat", "--alpha", "2"], "--alpha applies to --spectrum powerlaw only"),
], ids=["clip", "b0", "m", "lr-line-search", "alpha-flat"])
def test_options_the_run_would_ignore_are_refused(argv, needle, capsys, monkeypatch):
    """Like `threshold --lr` before it, an option that changes nothing is an error."""
    monkeypatch.setattr(rc, "solve_ode", _no_solve)
    assert main(["compare", *_SMALL, *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err, err


def test_figures_state_problem_noise_optimizer_and_band():
    """plot_compare: title with optimizer, hyperparameters, problem and noise; the legend
    marks theory and simulation and says what the band is."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    prob = rc.PowerLaw(50, 1.5, 0.5, rc.StudentT(3, 0.1))
    opt = rc.ClippedSGD(0.3, clip=0.5, batch=2)
    k = np.array([0, 1, 10, 100])
    meta = {"problem": prob.label, "d": 50, **opt.describe()}
    th = rc.Curve(k=k, risk=np.array([1.0, 0.5, 0.2, 0.1]), kind="ode", label="ODE",
                  meta=meta, noise_variance=0.03)
    sim = rc.Curve(k=k, risk=np.array([1.0, 0.52, 0.19, 0.1]), kind="simulation",
                   label="sim", stderr=np.full(4, 0.01), meta={**meta, "n_runs": 16})
    title = cli.run_title(prob, opt)
    for part in ("clipped_sgd", "lr=0.3", "clip=0.5", "B=2", prob.label, "Student-t ν=3"):
        assert part in title, (part, title)
    ax = rc.plot_compare(th, sim, title=title)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("theory") and labels[1].startswith("simulation"), labels
    assert "± 2 s.e." in labels[1] and "16 runs" in labels[1], labels
    default = rc.plot_compare(th, sim).get_title()  # from meta: still names everything
    for part in ("clipped_sgd", "lr=0.3", "clip=0.5", "B=2", prob.label, "E[ε²]=0.03"):
        assert part in default, (part, default)
    assert "lr" not in cli.run_title(prob, rc.LineSearch(batch=4)).split("\n")[0]


def test_scaling_law_validates_before_any_solve(capsys):
    from riskcurves.cli import main
    assert main(["scaling-law", "--alpha", "1", "--beta", "0.7", "--d-min", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--d-min" in err[0], err
    assert main(["scaling-law", "--alpha", "1", "--beta", "0.7", "--lr-fraction", "1.5"]) == 2


@pytest.mark.slow
def test_scaling_law_small_run(tmp_path):
    from riskcurves.cli import main
    assert main(["scaling-law", "--alpha", "1", "--beta", "0.7", "--d-min", "100",
                 "--d-max", "3000", "--d-num", "4", "--coarse", "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert any(f.endswith(".png") for f in files) and any(f.endswith(".json") for f in files)


def test_demo_default_runs_are_tiered_and_cut_at_the_horizon(tmp_path, capsys):
    """Without --n-runs each case uses its tiers (more runs early); a horizon shorter than
    a tier's k_max ends the tiers there (`--steps 12`: 1024 runs to k = 12)."""
    out = tmp_path / "demo"
    code = main(["demo", "--only", "line_search", "--d", "40", "--steps", "12",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    (row,) = json.loads((out / "demo.json").read_text())["cases"]
    assert row["runs_tiers"] == [[6, 4096], [None, 640]], row["runs_tiers"]
    assert row["n_runs"] == 640 and "4096/640" in printed
