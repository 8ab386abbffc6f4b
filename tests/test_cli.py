"""The `riskcurves` command: errors are one line with exit status 2; demo/threshold work."""

import json
import os
import re
import subprocess
import sys

import pytest

import riskcurves as rc
from riskcurves.cli import main

_SMALL = ["--d", "60", "--steps", "20", "--n-runs", "2"]


@pytest.mark.parametrize("argv,needle", [
    (["compare", "--lr", "-0.1"], "`lr` must be finite and > 0"),
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
    assert report["d"] == 200 and report["n_runs"] == 8
    (row,) = report["cases"]
    assert row["case"] == "sgd" and row["optimizer"]["optimizer"] == "sgd"
    err = row["max_rel_err"]
    # 8 runs at d = 200 (α = 1.5): the mean is noisy, but a wrong ODE would be far off
    assert 0 <= err < 0.5, f"demo max_rel_err {err:.3f} (d=200, 8 runs, tol 0.5)"
    assert "max rel err" in printed
    # --only with an unknown case is a one-line error
    assert main(["demo", "--only", "nope", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("riskcurves: error: --only")
