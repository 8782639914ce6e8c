"""Imports run one way (docs/architecture.md): the layering is checked, not only drawn.

- `profiles` imports neither `firmware_bridge` nor `sim` (nor `firmware`);
- `sim` imports only `firmware_bridge.protocol` from the controller (and `firmware`, whose core
  it can host as its device model);
- `firmware` is the code flashed to a board: it imports nothing of ours, and at run time only
  what MicroPython has (its own files by their on-board names: `import core`);
- `firmware_bridge` never imports `sim`, except where a simulator is composed: inside functions
  of `firmware_bridge/compose.py` and the CLI (lazily, so nothing loads it by accident), and
  for type annotations (`if TYPE_CHECKING:`) in `compose.py` and `massager.py`; it never
  imports `firmware`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSERS = {"firmware_bridge/compose.py"}  # may import sim inside functions
ANNOTATORS = {"firmware_bridge/compose.py", "firmware_bridge/massager.py"}  # TYPE_CHECKING only
OURS = {"firmware_bridge", "profiles", "sim", "firmware", "tests"}
# What the board has: MicroPython's modules the firmware uses, and its own files side by side.
MICROPYTHON = {"aioble", "asyncio", "bluetooth", "machine", "math", "micropython", "struct", "time"}
FIRMWARE_FILES = {"board", "core"}


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    in_function: bool
    type_checking: bool


def imports_of(source: str) -> list[Import]:
    """Every absolute import in `source`, with where it sits."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(
                    Import(a.name, child.lineno, in_function, type_checking) for a in child.names
                )
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Import(child.module, child.lineno, in_function, type_checking))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, True, type_checking)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(ast.Module(body=child.body, type_ignores=[]), in_function, True)
                visit(ast.Module(body=child.orelse, type_ignores=[]), in_function, type_checking)
            else:
                visit(child, in_function, type_checking)

    visit(ast.parse(source), False, False)
    return found


def violations(path: str, source: str) -> list[str]:
    """The one-way rules broken by the file at `path` (relative to the repository)."""
    package = path.split("/", 1)[0]
    problems = []
    for imp in imports_of(source):
        top = imp.module.split(".")[0]
        where = f"{path}:{imp.line} imports {imp.module}"
        if package == "profiles" and top in {"firmware_bridge", "sim", "firmware"}:
            problems.append(f"{where}: profiles is pure and imports neither")
        elif package == "firmware" and top in OURS:
            problems.append(f"{where}: the firmware is flashed alone and imports nothing of ours")
        elif (
            package == "firmware"
            and not imp.type_checking
            and top not in MICROPYTHON | FIRMWARE_FILES
        ):
            problems.append(f"{where}: MicroPython has no such module")
        elif package == "firmware_bridge" and top == "firmware":
            problems.append(f"{where}: the controller never depends on a device's firmware")
        elif (
            package == "sim"
            and top == "firmware_bridge"
            and not imp.module.startswith("firmware_bridge.protocol")
        ):
            problems.append(f"{where}: sim may only use firmware_bridge.protocol")
        elif package == "firmware_bridge" and top == "sim":
            lazy = imp.in_function and (
                path in COMPOSERS or path.startswith("firmware_bridge/cli/")
            )
            typing_only = imp.type_checking and path in ANNOTATORS
            if not (lazy or typing_only):
                problems.append(f"{where}: the controller composes sim only in compose.py")
    return problems


SOURCES = sorted(
    p.relative_to(ROOT).as_posix()
    for package in ("profiles", "sim", "firmware_bridge", "firmware")
    for p in (ROOT / package).rglob("*.py")
)


@pytest.mark.parametrize("path", SOURCES)
def test_imports_run_one_way(path: str) -> None:
    assert violations(path, (ROOT / path).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("profiles/model.py", "from firmware_bridge.safety import SafetySettings\n"),
        ("sim/foot.py", "import firmware_bridge.runner\n"),
        ("firmware_bridge/runner.py", "from sim.hosts import SimulatedMassager\n"),
        ("firmware_bridge/runner.py", "def f():\n    import sim.firmware\n"),
        ("firmware_bridge/compose.py", "from sim.firmware import FaultPlan\n"),
        ("firmware_bridge/safety/governor.py", "if TYPE_CHECKING:\n    import sim\n"),
        ("firmware/core.py", "from firmware_bridge.protocol import crc16\n"),
        ("firmware/core.py", "def f():\n    from sim.firmware import Firmware\n"),
        ("firmware/main.py", "from firmware import core\n"),
        ("firmware/core.py", "import dataclasses\n"),
        ("firmware/board.py", "from typing import Protocol\n"),
        ("firmware_bridge/runner.py", "from firmware.core import Core\n"),
        ("profiles/model.py", "import firmware.core\n"),
    ],
)
def test_a_wrong_way_import_is_caught(path: str, source: str) -> None:
    assert violations(path, source)


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("sim/foot.py", "from firmware_bridge.protocol import ScaledClock\n"),
        ("firmware_bridge/compose.py", "def f():\n    from sim.hosts import VirtualAir\n"),
        ("firmware_bridge/massager.py", "if TYPE_CHECKING:\n    from sim.foot import Foot\n"),
        ("firmware_bridge/cli/run.py", "async def f():\n    import sim\n"),
        ("sim/reference.py", "from firmware import core\n"),
        ("firmware/main.py", "import aioble\nimport core\nfrom machine import Pin\n"),
        ("firmware/core.py", "import struct\nif TYPE_CHECKING:\n    from typing import Any\n"),
    ],
)
def test_the_allowed_ways_pass(path: str, source: str) -> None:
    assert violations(path, source) == []
