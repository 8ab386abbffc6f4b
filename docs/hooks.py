"""mkdocs hook: write the `riskcurves` command's `--help` into docs/cli.md at build time.

A line `<!-- cli-help: SUBCOMMAND -->` becomes that subcommand's help text, so the page
can never disagree with the parser.
"""

from __future__ import annotations

import contextlib
import io
import re

_MARK = re.compile(r"^<!-- cli-help: ([\w-]+) -->$", re.M)


def _help(sub: str) -> str:
    from riskcurves.cli import build_parser

    parser = build_parser()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        parser.parse_args([sub, "--help"] if sub != "main" else ["--help"])
    return buf.getvalue()


_ITEM = re.compile(r"^(?:[-*+]|\d+\.) ")


def _loose_lists(markdown: str) -> str:
    """A list right after a paragraph line is a list on GitHub but not in Python-Markdown:
    insert the blank line Python-Markdown needs (outside code fences)."""
    out, fence, prev = [], False, ""
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif (not fence and _ITEM.match(line) and prev.strip() and not _ITEM.match(prev)
              and not prev.startswith((" ", "\t", "|", "#", ">"))):
            out.append("")
        out.append(line)
        prev = line
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files, **kwargs):
    markdown = _loose_lists(markdown)
    if not _MARK.search(markdown):
        return markdown
    return _MARK.sub(lambda m: "```text\n" + _help(m.group(1)).rstrip() + "\n```", markdown)


def on_config(config, **kwargs):
    """Every page of docs/theory/ is in the site: pages missing from the nav's "Theory"
    section (e.g. added by a later change) are appended to it, titled by their heading."""
    from pathlib import Path

    theory = next((item for item in config["nav"] or []
                   if isinstance(item, dict) and "Theory" in item), None)
    if theory is None:
        return config
    section = theory["Theory"]
    listed = {next(iter(e.values())) if isinstance(e, dict) else e for e in section}
    docs = Path(config["docs_dir"])
    for path in sorted((docs / "theory").glob("*.md")):
        rel = path.relative_to(docs).as_posix()
        if rel not in listed:
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
            section.append({first or path.stem: rel})
    return config
