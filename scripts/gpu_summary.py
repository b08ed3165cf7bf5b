"""One-screen summary of a scripts/gpu_check.sh run: test counts and each benchmark's headline.

Usage: python scripts/gpu_summary.py OUT_DIR JUNIT_XML  (writes OUT_DIR/summary.md and prints it)

Reads the CUDA tests' JUnit XML and OUT_DIR/benchmarks.md, where each benchmark's output
follows a ``## bench.<family>`` line.
A benchmark's headline is taken from its markdown tables, whatever their columns: the
rows' speedup cells (``2.83x``) give the smallest, median and largest ratio against the
peers, every non-empty ``target`` cell is listed (the issue's target and whether it is
met), and any ``match`` cell other than ``yes`` is flagged as a wrong result.
"""

from __future__ import annotations

import re
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

RATIO = re.compile(r"^(\d+(?:\.\d+)?)x$")


def test_counts(xml: Path) -> str:
    if not xml.exists():
        return "CUDA tests: no result file (the step did not run or was cut off)"
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    lines = [f"CUDA tests: {passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped"]
    lines += [f"  FAILED {name}" for name in failed[:15]]
    if len(failed) > 15:
        lines.append(f"  ... and {len(failed) - 15} more")
    return "\n".join(lines)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def bench_sections(path: Path) -> list[tuple[str, str]]:
    """(name, text) of each ``## bench.<family>`` section of benchmarks.md."""
    if not path.exists():
        return []
    sections: list[tuple[str, list[str]]] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("## bench."):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
    return [(name, "\n".join(lines)) for name, lines in sections]


def bench_headline(name: str, text: str) -> str:
    header: list[str] | None = None
    ratios: list[float] = []
    targets: list[str] = []
    wrong: list[str] = []
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        label = " / ".join(cells[:2])
        for c in cells:
            m = RATIO.match(c)
            if m:
                ratios.append(float(m.group(1)))
        for h, c in zip(header, cells):
            if h.startswith("target") and c:
                targets.append(f"{label}: {c}")
            if h == "match" and c and c != "yes":
                wrong.append(f"{label}: match={c}")
    if not ratios and not targets:
        return f"{name}: no result rows (cut off or failed; see the log)"
    out = [f"{name}: {len(ratios)} ratios vs peers, min {min(ratios):.2f}x, median "
           f"{statistics.median(ratios):.2f}x, max {max(ratios):.2f}x" if ratios else f"{name}:"]
    out += [f"  target  {t}" for t in targets]
    out += [f"  WRONG   {w}" for w in wrong]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2])
        return 2
    out = Path(argv[0])
    parts = [test_counts(Path(argv[1]))]
    parts += [bench_headline(name, text) for name, text in bench_sections(out / "benchmarks.md")]
    text = "\n".join(parts) + "\n"
    (out / "summary.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
