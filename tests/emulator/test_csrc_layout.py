"""The layout rule of csrc/: one folder per op family, and no family includes another's files.

A family (csrc/<family>/) may include its own files and csrc/common/; csrc/common/ includes
only itself; only the top-level registration and module files see every family. So a family
can be read, built and emulated on its own (tests/cuda_emulation.py builds per family).
"""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
SUFFIXES = {".h", ".cuh", ".cu", ".cpp"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def family_includes(path: pathlib.Path) -> list[tuple[str, str]]:
    """(included name, family it belongs to) for every include of a csrc file that names a csrc file."""
    families = {p.name for p in CSRC.iterdir() if p.is_dir()}
    out = []
    for _, name in INCLUDE.findall(path.read_text()):
        target = (path.parent / name).resolve() if name.startswith(".") else CSRC / name
        if target.exists() and CSRC in target.parents:
            rel = target.relative_to(CSRC)
            out.append((name, rel.parts[0] if len(rel.parts) > 1 else ""))
        elif name.split("/")[0] in families:
            out.append((name, name.split("/")[0]))
    return out


def test_no_includes_between_families():
    files = [p for p in CSRC.rglob("*") if p.suffix in SUFFIXES and p.parent != CSRC]
    assert len({p.relative_to(CSRC).parts[0] for p in files}) >= 7  # the families and common
    bad = []
    for path in files:
        family = path.relative_to(CSRC).parts[0]
        allowed = {family} if family == "common" else {family, "common"}
        bad += [f"{path.relative_to(ROOT)} includes {name}"
                for name, fam in family_includes(path) if fam not in allowed]
    assert not bad, "includes between families:\n" + "\n".join(bad)


def test_checker_sees_a_cross_family_include(tmp_path):
    """The rule above is not vacuous: an include of another family's header is reported."""
    src = CSRC / "gno" / "gno_args.cpp"
    fake = tmp_path / "local_probe.cpp"
    fake.write_text('#include "gno/gno.h"\n#include "common/checks.h"\n#include <vector>\n')
    assert [fam for _, fam in family_includes(fake)] == ["gno", "common"]
    assert ("common/checks.h", "common") in family_includes(src)
