"""The public API as a user meets it: `firmware_bridge.simulated()`, `Massager`, `Session`."""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import firmware_bridge
from firmware_bridge import StopReason
from profiles.model import Profile, Ramp, Steady
from sim import FaultPlan, Foot
from tests.rigs import until

pytestmark = pytest.mark.sim_only
SYSTEM_BUS = Path("/run/dbus/system_bus_socket").exists()

SHORT = Profile(
    name="short",
    title="Short",
    segments=[
        Steady(duration_s=60, level=1.0),
        Ramp(duration_s=30, start=0.4, end=0.0, cool_down=True),
    ],
)


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(folder))
    return folder


@pytest.mark.parametrize("tier", ["memory", "bumble"])
async def test_a_simulated_session_plays_under_the_cap_and_ends_at_zero(tier: str) -> None:
    async with firmware_bridge.simulated(tier=tier, speed=50) as massager:
        record = await massager.play(SHORT, cap=3)
        assert massager.simulator is not None
        firmware = massager.simulator.firmware
        assert record.stop_reason is StopReason.COMPLETED
        assert record.stop_confirmed is True
        assert firmware.levels == (0, 0, 0)
        top = max(max(a.levels) for a in firmware.applied)
        assert 0 < top <= 0.3 * firmware.max_level  # played, and never above cap 3 = 30 %
    assert 0 < record.max_intensity <= 0.3
    assert record.ratings, "the simulated person rates every 30 s of session time"


def _moving(massager: firmware_bridge.Massager) -> bool:
    return massager.simulator is not None and any(massager.simulator.firmware.levels)


async def _crash_mid_session(seen: list[firmware_bridge.Massager]) -> None:
    async with firmware_bridge.simulated(speed=20) as massager:
        seen.append(massager)
        running = asyncio.create_task(massager.session(SHORT, cap=4).run())
        await until(lambda: _moving(massager))
        try:
            raise RuntimeError("the caller's own bug")
        finally:
            running.cancel()


async def test_leaving_the_block_by_an_exception_mid_session_writes_zero() -> None:
    seen: list[firmware_bridge.Massager] = []
    with pytest.raises(RuntimeError, match="the caller's own bug"):
        await _crash_mid_session(seen)
    simulator = seen[0].simulator
    assert simulator is not None
    assert simulator.firmware.levels == (0, 0, 0)


async def test_massager_stop_stops_the_session_playing_now() -> None:
    async with firmware_bridge.simulated(speed=20) as massager:
        session = massager.session(SHORT)
        running = asyncio.create_task(session.run())
        await until(lambda: _moving(massager))
        result = await massager.stop()
        record = await running
        assert not _moving(massager)
    assert result.confirmed
    assert record.stop_reason is StopReason.USER_STOP


async def test_person_false_means_no_ratings_and_a_foot_of_your_own_is_used() -> None:
    async with firmware_bridge.simulated(speed=50, person=False) as massager:
        quiet = await massager.play(SHORT)
    assert quiet.ratings == []
    sensitive = Foot(sensitivity=(40.0, 40.0, 40.0), noise=0.0)  # feels everything as a lot
    async with firmware_bridge.simulated(speed=50, person=sensitive) as massager:
        record = await massager.play(SHORT)
    assert record.ratings
    assert max(n for _, n in record.ratings) >= 4


async def test_faults_reach_the_simulator() -> None:
    async with firmware_bridge.simulated(speed=10, faults=FaultPlan(mute_at_s=5.0)) as massager:
        record = await massager.play(SHORT)
    assert record.stop_reason is StopReason.DEVICE_SILENT


async def test_samples_and_events_reach_the_callers_hooks() -> None:
    samples: list[firmware_bridge.Sample] = []
    events: list[firmware_bridge.Event] = []
    async with firmware_bridge.simulated(speed=50) as massager:
        record = await massager.play(SHORT, on_sample=samples.append, on_event=events.append)
    assert len(samples) == len(record.samples) > 60
    assert [e.type for e in events] == [e.type for e in record.events]
    assert events[-1].type == "stop"


async def test_a_journaled_session_is_in_the_history_and_private(private_data_dir: Path) -> None:
    assert firmware_bridge.read_history() == []
    async with firmware_bridge.simulated(speed=50) as massager:
        await massager.play("relax", cap=2, max_minutes=1, journal=True)
    (entry,) = firmware_bridge.read_history()
    assert entry["profile"] == "relax"
    assert entry["stop_reason"] == "timeout"
    assert entry["closed"] is True
    (path,) = (private_data_dir / "sessions").iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_sessions_are_not_journaled_unless_asked() -> None:
    async with firmware_bridge.simulated(speed=50) as massager:
        await massager.play(SHORT)
    assert firmware_bridge.read_history() == []


async def test_bad_arguments_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="speed must be"):
        async with firmware_bridge.simulated(speed=0):
            pass
    with pytest.raises(ValueError, match="unknown simulator tier"):
        async with firmware_bridge.simulated(tier="radio"):
            pass
    with pytest.raises(firmware_bridge.ProfileError, match="nosuch"):
        firmware_bridge.load_profile("nosuch")
    async with firmware_bridge.simulated(speed=50) as massager:
        with pytest.raises(ValueError, match="cap must be 0-10"):
            massager.session(SHORT, cap=11)


@pytest.mark.skipif(SYSTEM_BUS, reason="a system bus: Bluetooth may be real on this machine")
async def test_connect_without_bluetooth_says_what_to_use_instead() -> None:
    # CI (a container) has no Bluetooth stack: the error is the one such a user gets.
    with pytest.raises(firmware_bridge.BluetoothUnavailableError) as caught:
        async with firmware_bridge.connect(scan_timeout=1):
            pass
    assert "firmware_bridge.simulated()" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in firmware_bridge.__all__:
        value = getattr(firmware_bridge, name)
        if name == "__version__":
            assert isinstance(value, str)
            assert value
            continue
        assert inspect.getdoc(value), f"firmware_bridge.{name} has no docstring"
    assert set(dir(firmware_bridge)) >= set(firmware_bridge.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        _ = firmware_bridge.nosuch  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_bluetooth_stack_or_simulator() -> None:
    code = (
        "import sys, firmware_bridge; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'bleak', 'bumble', 'sim', 'pydantic', 'aiomqtt', 'amqtt'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"PYTHONWARNINGS": "error"},
    )
    assert done.stdout.strip() == "[]"
