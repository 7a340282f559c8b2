"""Keep the README's demo summary what ``curvwidgets demo`` prints.

The README quotes one real run of the demo between two markers::

    <!-- demo-summary:begin -->
    ```
    ...the summary curvwidgets demo printed...
    ```

    Printed on <date>; CPU: <model name> ...
    <!-- demo-summary:end -->

Three uses::

    .venv/bin/python scripts/update_readme_demo.py [--out DIR]   # run the demo (about a minute), rewrite the block
    .venv/bin/python scripts/update_readme_demo.py --check       # the block holds a summary in the demo's format
    make demo | .venv/bin/python scripts/update_readme_demo.py --check-output   # so does a demo's output

Only the text between the markers is ever rewritten. The format is
:func:`curvwidgets.demo.format_demo_summary`'s, read back by
:func:`curvwidgets.demo.parse_demo_summary`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import List, Optional

from curvwidgets._machine import cpu_model
from curvwidgets.demo import DemoSummary, parse_demo_summary

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- demo-summary:begin -->", "<!-- demo-summary:end -->"
_BLOCK = re.compile(rf"{re.escape(BEGIN)}\n```\n(?P<summary>.*?)\n```\n\n(?P<provenance>Printed on .+?)\n"
                    rf"{re.escape(END)}", re.DOTALL)


def extract_summary(output: str) -> str:
    """The summary in a demo's printed ``output``: from its ``test accuracy`` line to its ``time:`` line.

    Raises
    ------
    ValueError
        When ``output`` holds no such lines, or more than one summary.
    """
    lines = output.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("test accuracy ")]
    if len(starts) != 1:
        raise ValueError(f"output: expected one demo summary (a 'test accuracy' line); found {len(starts)}")
    ends = [index for index in range(starts[0], len(lines)) if lines[index].startswith("time: ")]
    if not ends:
        raise ValueError("output: the demo summary has no 'time:' line after its 'test accuracy' line")
    return "\n".join(lines[starts[0]:ends[0] + 1])


def render_block(summary: str, provenance: str) -> str:
    """The README block, markers included, quoting ``summary`` and saying where it was printed."""
    if "\n" in provenance or not provenance.startswith("Printed on "):
        raise ValueError(f"provenance: one line starting 'Printed on '; got {provenance!r}")
    return f"{BEGIN}\n```\n{summary}\n```\n\n{provenance}\n{END}"


def read_block(readme: str) -> tuple[str, str]:
    """The ``(summary, provenance)`` quoted by the one block of ``readme`` (the README's text).

    Raises
    ------
    ValueError
        When the markers are missing or repeated, or the block is not as :func:`render_block` writes it.
    """
    _marker_positions(readme)
    match = _BLOCK.search(readme)
    if match is None:
        raise ValueError(f"readme: the text between {BEGIN} and {END} is not a fenced summary followed by a blank "
                         "line and a 'Printed on ...' line")
    return match.group("summary"), match.group("provenance")


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text from its begin marker to its end marker replaced by ``block``."""
    begin, end = _marker_positions(readme)
    return readme[:begin] + block + readme[end + len(END):]


def _marker_positions(readme: str) -> tuple[int, int]:
    """Where the begin and end markers are; a ValueError unless each appears once, in that order."""
    for marker in (BEGIN, END):
        if readme.count(marker) != 1:
            raise ValueError(f"readme: the marker {marker} must appear once; found {readme.count(marker)}")
    begin, end = readme.index(BEGIN), readme.index(END)
    if end < begin:
        raise ValueError(f"readme: {END} comes before {BEGIN}")
    return begin, end


def check_readme(readme: str) -> DemoSummary:
    """The numbers of ``readme``'s block, once its shape and its summary's format are checked."""
    summary, _ = read_block(readme)
    return parse_demo_summary(summary)


def provenance_line(date: datetime.date) -> str:
    """One line naming the date, CPU, torch and Python of a run on this machine."""
    return (f"Printed on {date.isoformat()}; CPU: {cpu_model()} ({platform.machine()}, {os.cpu_count()} logical "
            f"CPUs); torch {version('torch')}; Python {platform.python_version()}. "
            "`scripts/update_readme_demo.py` reruns the demo and rewrites this block.")


def run_demo_cli(out: Path) -> str:
    """What ``curvwidgets demo --out out`` prints on stdout (its progress bars pass through to stderr)."""
    finished = subprocess.run([sys.executable, "-m", "curvwidgets", "demo", "--out", str(out)],
                              stdout=subprocess.PIPE, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"curvwidgets demo exited with status {finished.returncode}:\n{finished.stdout}")
    return finished.stdout


def update_readme(path: Path, out: Optional[Path]) -> str:
    """Run the demo into ``out`` (a temporary folder when None) and write its summary into ``path``'s block.

    ``path`` is read again once the demo has run, so edits made to it meanwhile are kept.
    """
    read_block(path.read_text())  # a README without its block fails before the minute the demo takes
    folder = tempfile.TemporaryDirectory(prefix="curvwidgets-demo-") if out is None else contextlib.nullcontext(out)
    with folder as where:
        output = run_demo_cli(Path(where))
    summary = extract_summary(output)
    parse_demo_summary(summary)  # a summary out of format is never written
    path.write_text(replace_block(path.read_text(), render_block(summary, provenance_line(datetime.date.today()))))
    return summary


def parse_arguments(argv: Optional[List[str]]) -> argparse.Namespace:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only check the README's block (no demo run)")
    mode.add_argument("--check-output", action="store_true",
                      help="check the demo output read from stdin (echoed to stdout) instead of running the demo")
    mode.add_argument("--out", type=Path, default=None, help="folder for the demo's files (default: a temporary one)")
    parser.add_argument("--readme", type=Path, default=README, help=f"the README to check or rewrite ({README.name})")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Rewrite, or with ``--check`` / ``--check-output`` verify; a wrong shape ends in one line and status 1."""
    arguments = parse_arguments(argv)
    try:
        if arguments.check_output:
            output = sys.stdin.read()
            sys.stdout.write(output)
            parse_demo_summary(extract_summary(output))
            print("the demo's summary is in the format of the README's block")
        elif arguments.check:
            check_readme(arguments.readme.read_text())
            print(f"{arguments.readme}: the demo block is in the format of curvwidgets demo's summary")
        else:
            print(update_readme(arguments.readme, arguments.out))
            print(f"written into {arguments.readme}")
    except (ValueError, OSError, RuntimeError) as error:
        print(f"update_readme_demo: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
