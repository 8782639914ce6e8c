"""Every example people can copy runs, as written, against the simulator.

`examples/*.py`, and every ```python block in README.md, docs/ and the package docstrings:
each runs as its own program (a fresh interpreter, a private data directory), and must exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
RUN_LIMIT_S = 90  # the slowest example plays a 14.5-minute routine at 60x: about 16 s here

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# What each example must print: the thing it exists to show.
SHOWS = {
    "simulator_session.py": ("stop reason: completed", "motors now at (0, 0, 0)"),
    "stop_from_another_task.py": ("confirmed by the device: True", "user_stop", "(0, 0, 0)"),
    "custom_profile.py": ("refused: Value error, must end with at least 30 s", "completed"),
    "read_history.py": ("relax", "completed"),
}


def _blocks() -> list[tuple[str, str]]:
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    sources += sorted(
        p for pkg in ("firmware_bridge", "profiles", "sim") for p in (ROOT / pkg).rglob("*.py")
    )
    found = []
    for path in sources:
        for number, match in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8")), 1):
            found.append((f"{path.relative_to(ROOT)}#{number}", match.group(1)))
    return found


BLOCKS = _blocks()


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"MASSAGER_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=RUN_LIMIT_S,
        check=False,
    )


def test_every_example_is_listed_with_what_it_shows() -> None:
    assert [p.name for p in EXAMPLES] == sorted(SHOWS)


@pytest.mark.timeout(RUN_LIMIT_S + 10)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    done = _run([str(example)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for shown in SHOWS[example.name]:
        assert shown in done.stdout, done.stdout[-2000:]


def test_the_readme_has_a_python_example() -> None:
    assert any(name.startswith("README.md#") for name, _ in BLOCKS)


@pytest.mark.timeout(RUN_LIMIT_S + 10)
@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_python_block_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    done = _run([str(script)], tmp_path)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
