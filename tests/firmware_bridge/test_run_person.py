"""`massager run` for a person: the screening gate, the plan's ceiling, and the record."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.cli import main
from firmware_bridge.journal import data_dir
from firmware_bridge.person import SessionFacts
from firmware_bridge.person.screening import KEYS
from firmware_bridge.store import Store

pytestmark = pytest.mark.sim_only
FAST = ("--sim", "--sim-tier", "memory", "--speed", "200", "--mqtt", "off")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "run", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def _answers(tmp_path: Path, yes: str | None = None) -> str:
    path = tmp_path / "answers.toml"
    path.write_text("\n".join(f"{k} = {'true' if k == yes else 'false'}" for k in KEYS) + "\n")
    return str(path)


def test_the_demo_person_skips_the_gate_and_says_so() -> None:
    done = _run("relax", *FAST, "--json")
    assert done.returncode == 0, done.stderr
    assert "Demo: simulated person, no screening or course" in done.stderr
    assert json.loads(done.stdout)["person"] == "simulated-person"
    with Store.open() as store:
        assert store.people() == []  # a demo is nobody's course


def test_a_person_on_the_simulator_is_screened_first_and_never_waits() -> None:
    started = time.monotonic()
    done = _run("relax", *FAST, "--person", "ana")
    assert done.returncode == 2
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("massager: error")]
    assert "ana has not answered the screening questions" in line
    assert "massager setup --none-apply" in line
    assert time.monotonic() - started < 20  # refused before any device was touched


@pytest.mark.parametrize("key", KEYS)
def test_each_screening_answer_blocks_a_session(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["setup", "--person", "bo", "--answers", _answers(tmp_path, key)]) == 0
    capsys.readouterr()
    assert main(["run", "relax", *FAST, "--person", "bo"]) == 2
    err = capsys.readouterr().err
    assert "Sessions are paused for bo" in err
    assert "--clinician-cleared" in err


STRONG = """
name = "strong"
title = "Strong"
[[segments]]
kind = "steady"
duration_s = 90
level = 1.0
[[segments]]
kind = "ramp"
duration_s = 30
start = 0.3
end = 0.0
cool_down = true
"""


def test_diabetes_cleared_plays_low_and_the_session_is_recorded(tmp_path: Path) -> None:
    assert main(["setup", "--person", "cy", "--answers", _answers(tmp_path, "diabetes")]) == 0
    assert main(["setup", "--person", "cy", "--clinician-cleared"]) == 0
    strong = tmp_path / "strong.toml"
    strong.write_text(STRONG)  # asks for the whole ceiling: what reaches the motors is the plan's
    done = _run(str(strong), *FAST, "--person", "cy", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["person"] == "cy"
    assert summary["ceiling"] == pytest.approx(0.2)
    assert 0.15 < summary["max_intensity"] <= 0.2
    assert all(r["source"] != "simulated" for r in summary["ratings"])  # nobody rated for cy
    with Store.open() as store:
        (session,) = store.sessions("cy")
        assert session.stop_reason == "completed"
        assert session.ceiling == pytest.approx(0.2)
        assert len(store.samples(session.id)) == summary["samples"]
    again = _run("relax", *FAST, "--person", "cy")  # one session a day
    assert again.returncode == 2
    assert "1 session(s) a day at most" in again.stderr


def test_after_a_worse_morning_the_next_session_is_lower_and_shorter(tmp_path: Path) -> None:
    assert main(["setup", "--person", "ed", "--none-apply"]) == 0
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    facts = SessionFacts(
        id="yesterday",
        started_at=yesterday,
        profile="strong",
        device="simulator",
        ceiling=0.25,
        cap=4,
        planned_s=120,
        duration_s=120,
        stop_reason="completed",
        before=2,
    )
    with Store.open() as store:
        store.ensure_person("ed")
        store.begin_session("ed", facts, None)
        store.finish_session("yesterday", duration_s=120, stop_reason="completed")
        store.record_checkin("ed", 5, dt.datetime.now(dt.UTC))  # worse than the 2 before
    strong = tmp_path / "strong.toml"
    strong.write_text(STRONG)
    done = _run(str(strong), *FAST, "--person", "ed", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ceiling"] == pytest.approx(0.25 * 10 ** (-2.5 / 20), abs=1e-4)  # rounded
    assert summary["max_intensity"] <= summary["ceiling"]
    assert summary["stop_reason"] == "timeout"  # 20 % shorter than the profile's 120 s
    assert summary["duration_s"] == pytest.approx(96, abs=1.5)


def test_a_session_killed_mid_way_is_in_the_history_with_its_samples() -> None:
    assert main(["setup", "--person", "di", "--none-apply"]) == 0
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_bridge",
            "run",
            "heel-spur",
            "--sim",
            "--speed",
            "20",
            "--mqtt",
            "off",
            "--person",
            "di",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sessions = data_dir() / "sessions"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            files = list(sessions.glob("*.jsonl")) if sessions.exists() else []
            if files and files[0].read_text().count('"kind":"sample"') >= 5:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the session never wrote five samples")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    history = subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "history", "--person", "di", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (entry,) = [json.loads(line) for line in history.stdout.splitlines()]
    assert entry["stop_reason"] is None  # interrupted
    with Store.open() as store:
        assert len(store.samples(entry["id"])) >= 5
    listed = subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "history", "--person", "di"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "interrupted" in listed.stdout
