"""Coverage-guided fuzz targets (atheris), one module per parser; `scripts/fuzz` runs them.

Each target module has `TestOneInput(data: bytes)`, which feeds the bytes to real project code
and lets only unexpected exceptions escape: the error type a parser documents is swallowed, so
anything that propagates is a bug. Importing a target has no side effects (instrumentation is
switched on by `python -m fuzz`, not here), so the normal test suite imports and runs them too.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HERE", "targets"]

HERE = Path(__file__).parent


def targets() -> list[str]:
    """Every target module in this package (a private module such as __main__ is not one)."""
    return sorted(path.stem for path in HERE.glob("*.py") if not path.name.startswith("_"))
