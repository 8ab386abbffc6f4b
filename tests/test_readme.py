"""Every code block of README.md runs as written, on its own, in a fresh process, and
prints or saves something a reader can see.

A block is run in an empty temporary folder (Python blocks with `python -c`, shell
blocks with `bash -e`, the `riskcurves` command on PATH); it passes when it exits 0 and
either prints to standard output or writes a file. An HTML comment before a block tags
it: `<!-- readme-test: slow -->` runs it under `pytest -m slow` only (heavy blocks);
`<!-- readme-test: skip (...) -->` is allowed for the install block alone, which
`.ci/run` runs verbatim (checked below). Every block, slow or not, is syntax-checked in
the default run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_BLOCK = re.compile(r"(?:<!--\s*readme-test:\s*(?P<tag>[^>]*?)\s*-->[ \t]*\n)?"
                    r"^```(?P<lang>[\w-]*)[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)


@dataclasses.dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    tag: str

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.lang or 'text'}"


def readme_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text(encoding="utf-8") if text is None else text
    return [Block(text[:m.start("code")].count("\n") + 1, m.group("lang"), m.group("code"),
                  (m.group("tag") or "").strip()) for m in _BLOCK.finditer(text)]


BLOCKS = readme_blocks()
RUN = [b for b in BLOCKS if not b.tag.startswith("skip")]


def _params():
    return [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.tag.startswith("slow")
                         else []) for b in RUN]


def _env(tmp_path: Path) -> dict:
    shim = tmp_path / ".bin"
    shim.mkdir()
    exe = shim / "riskcurves"  # the installed entry point, for this interpreter and tree
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m riskcurves.cli "$@"\n')
    exe.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def test_readme_has_blocks_and_every_block_is_tagged_known():
    langs = {b.lang for b in BLOCKS}
    assert langs <= {"python", "bash"}, f"untestable block languages: {langs - {'python', 'bash'}}"
    assert sum(b.lang == "python" for b in RUN) >= 5, [b.id for b in RUN]
    for b in BLOCKS:
        assert b.tag == "" or b.tag == "slow" or b.tag.startswith("skip ("), (b.id, b.tag)


def test_only_the_install_block_is_skipped_and_ci_runs_it():
    skipped = [b for b in BLOCKS if b.tag.startswith("skip")]
    assert len(skipped) == 1, [b.id for b in skipped]
    lines = [ln for ln in skipped[0].code.splitlines() if ln.strip()]
    assert all(ln.startswith("python3 -m pip install") for ln in lines), lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[-1] in ci, f".ci/run does not run the README's test command {lines[-1]!r}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_syntax(block, tmp_path):
    """Every block, slow ones included, parses (and imports what it uses)."""
    if block.lang == "python":
        compile(block.code, f"README.md:{block.line}", "exec")
        used = set(re.findall(r"\brc\.", block.code))
        assert not used or "import riskcurves as rc" in block.code, \
            f"README.md:{block.line} uses rc. without `import riskcurves as rc`"
    else:
        script = tmp_path / "block.sh"
        script.write_text(block.code)
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("block", _params())
def test_block_runs(block, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "docs").symlink_to(ROOT / "docs")  # blocks may read docs/theory/phases.json
    env = _env(tmp_path)
    if block.lang == "python":
        cmd = [sys.executable, "-c", block.code]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    sec = time.perf_counter() - t0
    where = f"README.md:{block.line} ({block.lang}, {sec:.0f} s)"
    assert res.returncode == 0, f"{where} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    written = [p for p in work.rglob("*") if p.is_file() and not p.is_symlink()
               and "docs" not in p.relative_to(work).parts]
    assert res.stdout.strip() or written, f"{where} printed nothing and wrote no file"
    for p in written:
        assert p.stat().st_size > 0, f"{where} wrote an empty {p.name}"
    shutil.rmtree(work, ignore_errors=True)


def test_parser_finds_tags_and_languages():
    text = ("intro\n\n<!-- readme-test: slow -->\n```python\nprint(1)\n```\n\n"
            "```bash\necho hi\n```\n")
    a, b = readme_blocks(text)
    assert (a.lang, a.tag, a.code, a.line) == ("python", "slow", "print(1)\n", 5)
    assert (b.lang, b.tag, b.code) == ("bash", "", "echo hi\n")
