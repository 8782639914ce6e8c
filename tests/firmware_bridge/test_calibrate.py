"""`massager calibrate`: the person's ceiling per device, from a slow ramp per zone."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from firmware_bridge.cli import main
from firmware_bridge.person import Screening
from firmware_bridge.person.screening import KEYS
from firmware_bridge.store import Store

pytestmark = pytest.mark.sim_only


def _screened(person: str, yes: str | None = None, *, cleared: bool = False) -> None:
    if yes is None:
        assert main(["setup", "--person", person, "--none-apply"]) == 0
        return
    with Store.open() as store:
        store.ensure_person(person)
        answers = dict.fromkeys(KEYS, False) | {yes: True}
        store.add_screening(
            person, Screening(dt.datetime.now(dt.UTC), answers, "file", clinician_cleared=cleared)
        )


def _foot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "calibrate", "--sim", "--speed", "50", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
        env=os.environ | (env or {}),
    )


def _calibrations(person: str) -> list[float]:
    with Store.open() as store:
        return [c.ceiling for c in store.calibrations(person)]


def test_the_simulated_foot_answers_without_a_terminal() -> None:
    _screened("ana")
    done = _foot("--person", "ana", "--cap", "4")
    assert done.returncode == 0, done.stderr
    found = {
        zone: int(level)
        for zone, level in re.findall(r"^  (heel|arch|forefoot): (\d+)%$", done.stdout, re.M)
    }
    assert set(found) == {"heel", "arch", "forefoot"}
    assert len(set(found.values())) > 1, "the foot feels the zones differently"
    (ceiling,) = _calibrations("ana")
    assert round(ceiling * 100) == min(found.values())  # the most sensitive zone bounds all
    assert 0 < ceiling <= 0.4  # found below the cap, never above it
    assert f"ceiling on simulator is {ceiling:.0%}" in done.stdout


def test_the_configured_cap_bounds_the_ramp() -> None:
    _screened("al")
    done = _foot("--person", "al", env={"MASSAGER_CAP": "1"})
    assert done.returncode == 0, done.stderr
    (ceiling,) = _calibrations("al")
    assert ceiling <= 0.1


def test_a_person_not_screened_or_blocked_is_never_calibrated() -> None:
    done = _foot("--person", "new")
    assert done.returncode == 2
    assert "has not answered the screening questions" in done.stderr
    _screened("tom", "thrombosis")
    done = _foot("--person", "tom")
    assert done.returncode == 2
    assert "Sessions are paused for tom" in done.stderr
    assert _calibrations("tom") == []


def test_low_sensation_keeps_the_ramp_low() -> None:
    _screened("dia", "diabetes", cleared=True)
    done = _foot("--person", "dia", "--cap", "10")
    assert done.returncode == 0, done.stderr
    (ceiling,) = _calibrations("dia")
    assert ceiling <= 0.2


def test_without_a_terminal_a_real_device_is_not_calibrated() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "calibrate", "--person", "bo"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "massager: error: calibration needs you at the keys: run it on a terminal (or --sim)"
    )


def _spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    env = dict(os.environ)
    return pexpect.spawn(
        sys.executable,
        ["-m", "firmware_bridge", "calibrate", "--sim", *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(24, 80),
    )


def test_keys_mark_moderate_one_zone_at_a_time(tmp_path: Path) -> None:
    _screened("cy")
    child = _spawn(tmp_path, "--speed", "10", "--person", "cy")
    found = []
    for zone in ("heel", "arch", "forefoot"):
        child.expect(f"{zone}: rising slowly")
        child.expect(pexpect.TIMEOUT, timeout=2.5)  # let it rise (25 s of session time)
        child.send("m")  # one key, no Enter
        child.expect(rf"{zone}: (\d+)%")
        found.append(int(child.match.group(1)))
    child.expect(r"ceiling on simulator is (\d+)%")
    shown = int(child.match.group(1))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert shown == min(found)
    (ceiling,) = _calibrations("cy")
    assert round(ceiling * 100) == min(found)
    assert 0 < ceiling <= 0.4


@pytest.mark.parametrize("key", [" ", "q", "8"])
def test_space_q_or_too_much_stops_and_stores_nothing(tmp_path: Path, key: str) -> None:
    _screened("di")
    child = _spawn(tmp_path, "--speed", "10", "--person", "di")
    child.expect("heel: rising slowly")
    child.send(key)
    child.expect("Calibration stopped; nothing was stored.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert _calibrations("di") == []
