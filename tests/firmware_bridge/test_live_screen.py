"""The live screen of `massager run`, on a real pseudo-terminal: the installed program runs in a
pty (pexpect) and its output is played into a terminal emulator (pyte) to assert on the screen.

Keys are sent as a person presses them (one byte, no Enter). The simulator's own record of the
motors reaches the screen through the end-of-session summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte
import pytest
from pyte import modes
from wcwidth import wcwidth

pytestmark = pytest.mark.sim_only

MASSAGER = str(Path(sys.executable).with_name("massager"))  # the installed console script
DEMO_TITLE = "DEMO · simulated massager — no device is moving"
SIZES = [(80, 24), (120, 40)]
ZONE_ROW = re.compile(r"(heel|arch|forefoot)\s+[█·]+\s+(\d+)%\s+[█·]+\s+(\d+)%")
STEADY = """
name = "steady"
title = "Steady"
[[segments]]
kind = "steady"
label = "hold"
duration_s = 600
level = 1.0
[[segments]]
kind = "ramp"
duration_s = 30
start = 0.2
end = 0.0
cool_down = true
"""


class WrapWatch(pyte.Screen):
    """A terminal screen that notes every line the program let the terminal wrap."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.wrapped: list[str] = []

    def draw(self, data: str) -> None:
        for char in data:
            if self.cursor.x >= self.columns and modes.DECAWM in self.mode and wcwidth(char) > 0:
                self.wrapped.append(self.display[self.cursor.y])
            super().draw(char)


class Terminal:
    """A program in a pseudo-terminal of `columns` x `lines`, and what its screen shows."""

    def __init__(self, argv: list[str], *, columns: int = 80, lines: int = 24) -> None:
        env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES", "NO_COLOR"}}
        env["TERM"] = "xterm-256color"
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(lines, columns))
        self.child.delaybeforesend = None  # pexpect waits 50 ms before each send by default
        self.screen = WrapWatch(columns, lines)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    def pump(self, seconds: float = 0.05) -> bool:
        """Read what the program wrote for up to `seconds`; False once it has exited."""
        try:
            data = self.child.read_nonblocking(65536, timeout=seconds)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw += data
        self._stream.feed(data)
        return True

    def wait_for(self, check: Callable[[], object], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not check():
            if not self.pump() and not check():
                pytest.fail(f"exited before {what}:\n{self.text}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {within} s:\n{self.text}")

    def shows(self, text: str, within: float = 20) -> None:
        self.wait_for(lambda: text in self.text, within, repr(text))

    def send(self, key: str) -> None:
        self.child.send(key)

    def finish(self, within: float = 20) -> int:
        """Read until the program exits; its exit status."""
        self.wait_for(lambda: not self.child.isalive() and not self.pump(0.01), within, "exit")
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def cbreak(self) -> tuple[bool, bool]:
        """(canonical, echo) of the terminal right now, as the program left it."""
        lflag = termios.tcgetattr(self.child.child_fd)[3]
        return bool(lflag & termios.ICANON), bool(lflag & termios.ECHO)

    def whole_frame(self) -> bool:
        """True when the view is on screen whole (a read can end in the middle of a redraw)."""
        rows = self.screen.display
        tops = [i for i, row in enumerate(rows) if row.startswith("╭─")]
        bottoms = [i for i, row in enumerate(rows) if row.startswith("╰─")]
        if not tops or not bottoms or bottoms[-1] < tops[-1]:
            return False
        return all(row.startswith("│") for row in rows[tops[-1] + 1 : bottoms[-1]])

    def zones(self) -> dict[str, tuple[int, int]]:
        """Commanded and applied percent per zone, as the screen shows them now ({} while a
        redraw is half-way)."""
        if not self.whole_frame():
            return {}
        return {m[1]: (int(m[2]), int(m[3])) for m in ZONE_ROW.finditer(self.text)}

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Programs started by a test; any still running at its end are killed."""
    started: list[Terminal] = []
    yield started
    for term in started:
        term.close()


def run(terminals: list[Terminal], *args: str, columns: int = 80, lines: int = 24) -> Terminal:
    term = Terminal([MASSAGER, "run", *args, "--mqtt", "off"], columns=columns, lines=lines)
    terminals.append(term)
    return term


@pytest.mark.parametrize(("columns", "lines"), SIZES, ids=[f"{c}x{r}" for c, r in SIZES])
def test_the_screen_fits_shows_the_demo_and_space_stops_at_once(
    terminals: list[Terminal], columns: int, lines: int
) -> None:
    term = run(terminals, "heel-spur", "--sim", "--speed", "10", columns=columns, lines=lines)
    term.wait_for(lambda: term.zones().get("heel", (0, 0))[1] > 0, 20, "output on the heel")
    screen = term.text
    assert DEMO_TITLE in screen
    assert re.search(r"heel-spur · segment \d+ of 13 · ", screen)
    assert re.search(r"[█·]+\s+\d+%  elapsed \d\d:\d\d · left \d\d:\d\d", screen)
    assert "applied (device)" in screen
    assert "cap 4/10 · ceiling 40%" in screen
    assert "link connected" in screen
    assert "space/s stop" in screen
    assert "not a medical device" in screen  # the notice stays above the view, not cleared
    assert term.cbreak() == (False, False)  # one key at a time, nothing echoed
    pressed = time.monotonic()
    term.send(" ")
    term.shows("STOPPED (user stop) · the device confirmed zero output")
    on_screen_s = time.monotonic() - pressed
    term.shows("Simulated massager: motors at 0 0 0 at the end, last set by a STOP.")
    assert term.finish() == 0
    latency = re.search(r"confirmed zero output ([\d.]+) ms after the stop", term.text)
    assert latency is not None, term.text
    assert float(latency[1]) < 50  # within one control tick of real time (20 Hz)
    assert on_screen_s < 1.0
    assert term.screen.wrapped == []  # every line fits: the terminal never wrapped one


def test_a_digit_rates_at_once_without_enter(terminals: list[Terminal]) -> None:
    term = run(terminals, "heel-spur", "--sim", "--speed", "30")
    term.shows("RUNNING")
    term.send("3")
    term.shows("you rated 3: target", within=2)  # no Enter, and said at once
    assert re.search(r"last rating 3 by you|yours: 3 at", term.text)
    term.send("s")
    term.shows("Session user stop")
    assert term.finish() == 0
    assert re.search(r"Ratings: .*\byou 3\b", term.text.replace("\n", " "))
    assert term.screen.wrapped == []


def test_p_pauses_to_zero_resumes_from_zero_and_minus_lowers_the_cap(
    terminals: list[Terminal], tmp_path: Path
) -> None:
    profile = tmp_path / "steady.toml"
    profile.write_text(STEADY)
    term = run(terminals, str(profile), "--sim", "--speed", "10", "--cap", "4")
    term.wait_for(lambda: term.zones().get("heel", (0, 0))[1] == 40, 20, "40 % on the heel")
    term.send("p")
    paused = time.monotonic()

    def all_zero() -> bool:
        zones = term.zones()
        return len(zones) == 3 and all(zones[z] == (0, 0) for z in zones)

    term.wait_for(lambda: "PAUSED" in term.text and all_zero(), 2, "PAUSED at zero")
    assert time.monotonic() - paused < 1.0
    progress = re.search(r"(\d+)%  elapsed", term.text)
    assert progress is not None
    end, frames = time.monotonic() + 1.0, 0  # 10 s of session time
    while time.monotonic() < end:
        term.pump()
        if term.zones():
            frames += 1
            assert all_zero(), term.text  # held at zero
    assert frames > 0
    term.wait_for(term.whole_frame, 2, "a whole frame")
    assert f"{progress[1]}%  elapsed" in term.text  # the profile waits
    term.send("p")
    resumed = time.monotonic()
    term.shows("resumed: rising again from zero", within=2)
    seen: list[tuple[float, int]] = []
    while time.monotonic() - resumed < 4:
        term.pump()
        heel = term.zones().get("heel")
        if "RUNNING" in term.text and heel is not None and (not seen or seen[-1][1] != heel[1]):
            seen.append((time.monotonic() - resumed, heel[1]))
        if seen and seen[-1][1] == 40:
            break
    assert seen[0][1] <= 10, seen  # from zero, not back at 40 %
    assert len({level for _, level in seen}) >= 4, seen  # gradually, step by step
    at_cap = next(t for t, level in seen if level == 40)
    assert at_cap > 1.5, seen  # S2: 0 → 40 % takes about 25 s of session time (2.5 s here)
    term.send("-")
    lowered = time.monotonic()
    term.wait_for(
        lambda: term.zones().get("heel", (100, 100))[1] <= 30, 2, "output under the lowered cap"
    )
    assert time.monotonic() - lowered < 1.0
    assert "cap 3/10 (lowered from 4) · ceiling 30%" in term.text
    term.send("s")
    term.shows("Paused 1 time(s)")
    assert "Cap lowered during the session to 3." in term.text
    assert term.finish() == 0
    assert term.screen.wrapped == []


def test_a_terminal_that_stops_reading_never_stalls_the_session(terminals: list[Terminal]) -> None:
    """Ctrl-S, a stalled ssh: writes to the terminal block once its buffer is full. The control
    loop must not block with them (its heartbeats and the device-silence check would stop)."""
    term = run(terminals, "heel-spur", "--sim", "--speed", "10")
    term.shows("RUNNING")
    time.sleep(4)  # read nothing: the pty's buffer fills within about two seconds of redraws
    term.send(" ")
    assert term.finish(within=30) == 0
    out = term.raw.decode(errors="replace")
    assert "Session user stop" in out
    assert "motors at 0 0 0" in out
    assert "device silent" not in out
    assert "fault" not in out


def stty_after(term: Terminal) -> str:
    """What `stty -a` printed after the program, from the raw output."""
    term.wait_for(lambda: b"STTY-END" in term.raw, 30, "stty -a")
    out = term.raw.decode(errors="replace")
    return out[out.rindex("STTY-BEGIN") : out.rindex("STTY-END")]


def restored(stty: str) -> bool:
    """icanon and echo on again (stty prints `-icanon`, `-echo` when they are off)."""
    return bool(re.search(r"(?<![-\w])icanon\b", stty) and re.search(r"(?<![-\w])echo\b", stty))


def in_bash(command: str) -> Terminal:
    script = f'{command}; echo "EXIT=$?"; echo STTY-BEGIN; stty -a; echo STTY-END'
    return Terminal(["bash", "-c", script])


def test_ctrl_c_stops_and_the_terminal_is_restored(terminals: list[Terminal]) -> None:
    term = in_bash(f"{MASSAGER} run heel-spur --sim --speed 10 --mqtt off")
    terminals.append(term)
    term.shows("RUNNING")
    assert term.cbreak() == (False, False)
    term.child.sendintr()  # ^C through the terminal: SIGINT to the foreground job
    stty = stty_after(term)
    out = term.raw.decode(errors="replace")
    assert "EXIT=0" in out
    assert "Session user stop" in out
    assert "The device confirmed zero output" in out
    assert restored(stty), stty


def test_a_crash_restores_the_terminal(terminals: list[Terminal], tmp_path: Path) -> None:
    """An exception escaping the session (injected here: nothing in the program raises one on
    purpose) still gives the person their terminal back, and exits non-zero."""
    crash = tmp_path / "crash.py"
    crash.write_text(
        "import asyncio, sys\n"
        "from firmware_bridge import runner\n"
        "from firmware_bridge.cli import main\n"
        "play = runner.Session.run\n"
        "async def run_then_crash(self):\n"
        "    playing = asyncio.ensure_future(play(self))\n"
        "    await asyncio.sleep(1.5)\n"
        "    raise RuntimeError('injected crash')\n"
        "runner.Session.run = run_then_crash\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    term = in_bash(f"{sys.executable} {crash} run heel-spur --sim --speed 10 --mqtt off")
    terminals.append(term)
    term.shows("RUNNING")
    assert term.cbreak() == (False, False)
    stty = stty_after(term)
    out = term.raw.decode(errors="replace")
    assert "RuntimeError: injected crash" in out
    assert "EXIT=1" in out
    assert restored(stty), stty


def test_with_json_the_screen_goes_to_stderr_and_stdout_is_one_document(
    terminals: list[Terminal], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    term = in_bash(f"{MASSAGER} run heel-spur --sim --speed 30 --mqtt off --json > {summary}")
    terminals.append(term)
    term.shows(DEMO_TITLE)  # drawn on stderr, the terminal
    term.shows("RUNNING")
    term.send("4")
    term.shows("you rated 4: hold", within=2)
    term.send(" ")
    stty_after(term)
    text = summary.read_text()
    assert text.count("\n") == 1  # one line, one document
    document = json.loads(text)
    assert document["stop_reason"] == "user_stop"
    assert {"t": document["ratings"][-1]["t"], "nrs": 4, "source": "person"} in document["ratings"]
    assert term.screen.wrapped == []


PLAIN_RUN = [MASSAGER, "run", "maintenance", "--sim", "--sim-tier", "memory", "--speed", "200"]


def test_without_a_terminal_progress_is_plain_lines_on_stderr_and_json_on_stdout() -> None:
    proc = subprocess.run(
        [*PLAIN_RUN, "--json", "--mqtt", "off"],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    summary = json.loads(proc.stdout)  # exactly one JSON document
    assert summary["stop_reason"] == "completed"
    assert summary["ratings"]
    assert {rating["source"] for rating in summary["ratings"]} == {"simulated"}
    assert re.search(
        r"^\d\d:\d\d segment warm-up$", proc.stderr, re.MULTILINE
    )  # a busy CPU is late
    assert "discomfort" in proc.stderr
    assert "by simulated person" in proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr  # no terminal control codes in a log
