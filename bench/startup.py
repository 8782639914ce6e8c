"""Start-up: wall time of `massager --help` and `massager run --help` beside `python -c pass`.

Each command is a fresh interpreter (`python -m firmware_bridge ...`, the same interpreter as
this one), timed from spawn to exit; the commands are interleaved so that a burst of load on
the machine hits all of them alike. `python -X importtime -c "import firmware_bridge.cli"`
names the imports that cost the most (cumulative, the module with everything it imported).
This only measures: the CLI's imports are left as they are.

Run: `python -m bench.startup -n 20`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

RUN_TIMEOUT_S = 60.0  # one `massager --help` takes ~0.3-1 s here; a stalled child is killed
IMPORTED = "firmware_bridge.cli"  # what `massager` imports before it parses anything
TOP = 5  # how many of the costliest imports are reported

# name → argv after the interpreter; the first is the floor the others are compared with.
FLOOR = "python -c pass"
COMMANDS: dict[str, tuple[str, ...]] = {
    FLOOR: ("-c", "pass"),
    "massager --help": ("-m", "firmware_bridge", "--help"),
    "massager run --help": ("-m", "firmware_bridge", "run", "--help"),
}


@dataclass(frozen=True)
class Import:
    """One line of `-X importtime`: a module's own and cumulative import time."""

    module: str
    self_us: int
    cumulative_us: int


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)  # an inherited setting would slow every child
    env["NO_COLOR"] = "1"  # help text without terminal styling: the same work every run
    env["COLUMNS"] = "80"
    return env


def time_once(argv: tuple[str, ...]) -> float:
    """Seconds from spawn to exit of `python ARGV`; raises when it fails."""
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=RUN_TIMEOUT_S,
        env=_environment(),
    )
    return time.perf_counter() - started


def wall_times(n: int) -> dict[str, list[float]]:
    """`n` wall times (s) per command, interleaved: round i runs every command once."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    time_once(COMMANDS[FLOOR])  # warm the file cache once: later runs all start warm
    for _ in range(n):
        for name, argv in COMMANDS.items():
            times[name].append(time_once(argv))
    return times


def import_times(module: str = IMPORTED) -> list[Import]:
    """Every import `python -X importtime -c "import MODULE"` reports, costliest first."""
    done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=_environment(),
    )
    found: list[Import] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        found.append(Import(name.strip(), int(own), int(cumulative)))
    return sorted(found, key=lambda i: i.cumulative_us, reverse=True)


def top_offenders(imports: list[Import], module: str = IMPORTED, top: int = TOP) -> list[Import]:
    """The `top` costliest imports apart from `module` and its parent packages (which include
    everything by definition)."""
    parts = module.split(".")
    own = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return [i for i in imports if i.module not in own][:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs of each command (default 20)")
    args = parser.parse_args()
    times = wall_times(args.n)
    imports = import_times()
    result = {
        "wall_ms_median": {
            name: round(1000 * statistics.median(t), 1) for name, t in times.items()
        },
        "n": args.n,
        "import_total_ms": round(imports[0].cumulative_us / 1000, 1) if imports else None,
        "top_imports_cumulative_ms": {
            i.module: round(i.cumulative_us / 1000, 1) for i in top_offenders(imports)
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
