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


def on_page_markdown(markdown, page, config, files, **kwargs):
    if not _MARK.search(markdown):
        return markdown
    return _MARK.sub(lambda m: "```text\n" + _help(m.group(1)).rstrip() + "\n```", markdown)
