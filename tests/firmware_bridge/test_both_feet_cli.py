"""`massager run ... --sim --devices 2`: both feet as a real process, over a real broker."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.telemetry.mqtt import make_client
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto
from tests.firmware_bridge.test_cli import GOOD_PROFILE
from tests.mqtt_sessions import send

pytestmark = pytest.mark.sim_only


async def start(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_bridge",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def summary_of(process: asyncio.subprocess.Process) -> tuple[dict[str, Any], str]:
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert out, err.decode()
    return json.loads(out), err.decode()


async def test_two_simulated_massagers_play_together_and_report_each(tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text(GOOD_PROFILE)
    process = await start(
        "run", str(profile), "--sim", "--devices", "2", "--sim-tier", "memory",
        "--speed", "100", "--json", "--mqtt", "off", "--no-journal",
    )  # fmt: skip
    summary, err = await summary_of(process)
    assert process.returncode == 0, err
    assert summary["stop_reason"] == "completed"
    devices = summary["devices"]
    assert [d["label"] for d in devices] == ["1", "2"]
    assert len({d["address"] for d in devices}) == 2
    for device in devices:
        assert device["stop_reason"] == "completed"
        assert device["stop_confirmed"] is True
        assert device["sim"]["final_levels"] == [0, 0, 0]
        assert 0 < device["max_intensity"] <= 0.4
    assert "One stop stops all" in err


async def test_a_signal_stops_both_massagers(tmp_path: Path) -> None:
    process = await start(
        "run", "relax", "--sim", "--devices", "2", "--sim-tier", "memory",
        "--speed", "40", "--json", "--mqtt", "off", "--no-journal",
    )  # fmt: skip
    assert process.stderr is not None
    while b"One stop stops all" not in await asyncio.wait_for(process.stderr.readline(), 30):
        pass
    await asyncio.sleep(2.0)  # 80 session seconds in: both are playing
    process.send_signal(signal.SIGINT)
    summary, err = await summary_of(process)
    assert process.returncode == 0, err
    assert summary["stop_reason"] == "user_stop"
    for device in summary["devices"]:
        assert device["stop_reason"] == "user_stop"
        assert device["stop_confirmed"] is True
        assert device["sim"]["final_levels"] == [0, 0, 0]
        assert device["max_intensity"] > 0  # it was playing
        assert device["sim"]["last_change"] == "stop"  # and the stop zeroed it


async def test_a_remote_stop_to_one_device_id_stops_both(mosquitto: Mosquitto) -> None:
    process = await start(
        "run", "relax", "--sim", "--devices", "2", "--sim-tier", "memory",
        "--speed", "20", "--json", "--mqtt", mosquitto.url, "--device-id", "feet", "--no-journal",
    )  # fmt: skip
    async with make_client(mosquitto.settings, identifier="test-feet") as client:
        await client.subscribe("massager/+/state", qos=1)
        running: set[str] = set()
        async with asyncio.timeout(30):
            async for message in client.messages:
                state = json.loads(message.payload)
                if state.get("state") == "running":
                    running.add(str(message.topic).split("/")[1])
                if running == {"feet-1", "feet-2"}:
                    break
    # a rating sent to the second device's topic is the person's, for both feet: the lead's
    # record (the person's course) has it
    await send(mosquitto.settings, Topics("feet-2").command("discomfort"), "5")
    await asyncio.sleep(0.5)
    stop = await start("stop", "--mqtt", mosquitto.url, "--device-id", "feet-2")
    _, stop_err = await asyncio.wait_for(stop.communicate(), 30)
    assert stop.returncode == 0, stop_err.decode()
    summary, err = await summary_of(process)
    assert process.returncode == 0, err
    assert [d["id"] for d in summary["devices"]] == ["feet-1", "feet-2"]
    assert [d["stop_reason"] for d in summary["devices"]] == ["remote_stop", "remote_stop"]
    assert all(d["sim"]["final_levels"] == [0, 0, 0] for d in summary["devices"])
    assert {"nrs": 5, "source": "remote"} in [
        {k: r[k] for k in ("nrs", "source")} for r in summary["ratings"]
    ]
