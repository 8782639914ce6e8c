"""Two processes on one machine, real bumble HCI over loopback TCP (tests/sim/two_process.py):

- `kill-controller`: `massager run` is SIGKILLed mid-session → the simulator's record shows the
  motors at zero, cause `watchdog` (the device's timestamp of the zero; the floor is the watchdog
  itself, 1.5 s after the controller's last frame, which came ≤ 0.5 s before the kill);
  all repetitions share one `massager sim serve`, so each also shows it takes a new controller;
- `kill-simulator`: `massager sim serve` is SIGKILLed mid-session → the controller process has
  exited (its stop reason and exit code are checked: link_lost, 1).

Run: `python -m bench.two_process -n 10` (each repetition takes about 10 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from bench.stats import summary
from tests.sim.two_process import kill_controller, kill_simulator, start_sim

TIME_LIMIT_S = 900.0  # the whole run stops starting repetitions after this (wall clock, s)


def kill_controllers(root: Path, n: int, deadline: float) -> tuple[list[float], list[float]]:
    """kill → zero (device timestamp) and kill → zero seen in the file, per repetition."""
    to_zero, seen = [], []
    sim = start_sim(root)
    try:
        for index in range(n):
            if time.monotonic() > deadline:
                break
            workdir = root / f"controller-{index}"
            workdir.mkdir()
            killed = kill_controller(sim, workdir)
            assert killed.zero["cause"] == "watchdog", killed
            to_zero.append(killed.kill_to_zero_s)
            seen.append(killed.kill_to_seen_s)
    finally:
        sim.end()
    return to_zero, seen


def kill_simulators(root: Path, n: int, deadline: float) -> list[float]:
    """kill the simulator → the controller process has exited, per repetition."""
    exits = []
    for index in range(n):
        if time.monotonic() > deadline:
            break
        workdir = root / f"simulator-{index}"
        workdir.mkdir()
        killed = kill_simulator(workdir)
        assert killed.summary.get("stop_reason") == "link_lost", killed.stderr
        assert killed.returncode == 1, killed
        exits.append(killed.kill_to_exit_s)
    return exits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="repetitions of each scenario")
    parser.add_argument(
        "--time-limit", type=float, default=TIME_LIMIT_S, help="seconds for the whole run"
    )
    args = parser.parse_args()
    deadline = time.monotonic() + args.time_limit
    with tempfile.TemporaryDirectory(prefix="two-process-") as tmp:
        root = Path(tmp)
        to_zero, seen = kill_controllers(root, args.n, deadline)
        exits = kill_simulators(root, args.n, deadline)
    result = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "kill_controller_to_zero": summary(to_zero) if len(to_zero) > 1 else to_zero,
        "kill_controller_to_zero_seen_in_file": summary(seen) if len(seen) > 1 else seen,
        "kill_simulator_to_controller_exit": summary(exits) if len(exits) > 1 else exits,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
