"""The import layers: problems -> theory -> odes | simulate -> studies -> cli/plotting.

Parses every module's imports (including lazy imports inside functions: a lazy
import that goes up a layer is still a cycle)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "riskcurves"
PROBLEM_MODULES = ["problems.py", "_noise.py", "_matrix_problem.py", "_compress.py",
                   "_plrf.py", "optimizers.py", "_curve.py", "_errors.py"]


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute dotted names of every riskcurves module imported by `path`."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    pkg = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("riskcurves")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("riskcurves"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _files(sub: str) -> list[pathlib.Path]:
    p = ROOT / sub
    return sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])


def _hits(files, forbidden):
    bad = []
    for f in files:
        for name in _imports(f):
            if any(name == x or name.startswith(x + ".") for x in forbidden):
                bad.append(f"{f.relative_to(ROOT)} imports {name}")
    return bad


UP = ["riskcurves.odes", "riskcurves.simulate", "riskcurves.studies", "riskcurves.cli",
      "riskcurves.plotting"]


@pytest.mark.parametrize("sub", ["theory"] + PROBLEM_MODULES)
def test_lower_layers_never_import_solvers_or_studies(sub):
    assert not _hits(_files(sub), UP), _hits(_files(sub), UP)


def test_odes_and_simulate_never_import_each_other():
    bad = _hits(_files("odes"), ["riskcurves.simulate", "riskcurves.studies",
                                 "riskcurves.cli", "riskcurves.plotting"])
    bad += _hits(_files("simulate"), ["riskcurves.odes", "riskcurves.studies",
                                      "riskcurves.cli", "riskcurves.plotting"])
    assert not bad, bad


def test_studies_never_import_the_faces():
    bad = _hits(_files("studies"), ["riskcurves.cli", "riskcurves.plotting"])
    assert not bad, bad


def test_the_parser_sees_relative_and_lazy_imports(tmp_path):
    """Guard against a parser that silently sees nothing."""
    names = _imports(ROOT / "odes" / "_solve.py")
    assert "riskcurves.theory" in names and "riskcurves._curve" in names
    assert "riskcurves.odes" in _imports(ROOT / "studies" / "_sweep.py")
