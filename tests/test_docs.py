"""The documentation site builds with warnings as errors, and holds what it promises.

`mkdocs build --strict` (mkdocs-material + mkdocstrings + mkdocs-jupyter, notebooks
rendered without execution): every page and link resolves, the API reference is
generated from the docstrings, every page of docs/theory/ and every notebook is
rendered, the CLI page carries the parser's help. Nothing under docs/, README.md or the
package docstrings points to a file outside the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                          str(ROOT / "mkdocs.yml"), "-d", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    sec = time.perf_counter() - t0
    log = "\n".join(ln for ln in (res.stdout + res.stderr).splitlines()
                    if "WARNING" in ln or "ERROR" in ln or "Error" in ln)
    assert res.returncode == 0, f"mkdocs build --strict failed ({sec:.0f} s):\n{log}\n" \
                                f"{res.stderr[-3000:]}"
    return out


def _page(site, rel):
    path = site / rel / "index.html"
    assert path.exists(), f"{rel} was not built"
    return path.read_text(encoding="utf-8")


def test_every_theory_page_and_notebook_is_rendered(site):
    for md in sorted((ROOT / "docs" / "theory").glob("*.md")):
        html = _page(site, f"theory/{md.stem}")
        assert len(html) > 5000, md.name
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        html = _page(site, f"notebooks/{nb.stem}")
        assert "import riskcurves" in html, f"{nb.name}: code cells not rendered"


def test_api_reference_is_generated_from_the_docstrings(site):
    import riskcurves as rc

    for rel, names in {
        "api/solve": ["riskcurves.solve_ode", "riskcurves.Curve", "riskcurves.max_rel_err"],
        "api/simulate": ["riskcurves.simulate"],
        "api/optimizers": ["riskcurves.optimizers.SGD", "riskcurves.optimizers.SignSVD"],
        "api/problems": ["riskcurves.problems.PowerLaw", "riskcurves.StudentT"],
        "api/plotting": ["riskcurves.plotting.plot_compare"],
    }.items():
        html = _page(site, rel)
        for name in names:
            assert f'id="{name}"' in html, f"{name} missing from {rel}"
    # a docstring sentence reaches the page
    first = rc.solve_ode.__doc__.strip().splitlines()[0]
    assert first.split("`")[0].strip() in _page(site, "api/solve"), first


def test_cli_page_has_the_parsers_help(site):
    html = _page(site, "cli")
    for opt in ("--n-runs", "--noise", "--from-json", "--only", "(default: 1000)"):
        assert opt in html, opt


def test_quick_start_on_the_site_is_the_tested_readme_block():
    from test_readme import readme_blocks

    readme = [b.code for b in readme_blocks() if b.lang == "python"]
    start = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    blocks = readme_blocks(start)
    py = [b.code for b in blocks if b.lang == "python"]
    assert py and all(code in readme for code in py), "getting-started.md drifted from README"
    index = [b.code for b in readme_blocks((ROOT / "docs" / "index.md").read_text())
             if b.lang == "python"]
    for code in index:  # an excerpt: every line is in the README's quick start
        assert all(any(line in r for r in readme) for line in code.splitlines()), code


_OUTSIDE = re.compile(r"SPEC\b|SIGNSVD\.md|\.\./shared/|shared/SPEC")


def test_nothing_points_outside_the_repository():
    """README, docs and docstrings refer to docs/theory pages, not to files outside."""
    skip: set[str] = set()
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "riskcurves").rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb")]
    bad = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        if rel in skip or "/notebooks/" in rel and rel.startswith("docs/"):
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if _OUTSIDE.search(line):
                bad.append(f"{rel}:{i}: {line.strip()[:100]}")
    assert not bad, "references to files outside the repository:\n" + "\n".join(bad)


def test_lists_after_a_paragraph_render_as_lists():
    """GitHub renders a list that follows a paragraph line; Python-Markdown needs a blank
    line, which the docs hook inserts (code fences untouched)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    md = "Text:\n- a\n- b\n\n```\nx\n- not a list\n```\n"
    assert hooks._loose_lists(md) == "Text:\n\n- a\n- b\n\n```\nx\n- not a list\n```\n"
