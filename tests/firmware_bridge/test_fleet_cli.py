"""`massager fleet FILE` as a real process: the file's errors, a remote stop-all, a signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from firmware_bridge.cli import main
from firmware_bridge.telemetry.mqtt import make_client
from tests.brokers import Mosquitto
from tests.firmware_bridge.test_both_feet_cli import start, summary_of

pytestmark = pytest.mark.sim_only

FIVE = """
profile = "relax"
sim = true
""" + "".join(f'[[device]]\nid = "room-{n}"\n' for n in range(5))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sim = true\n", "f.toml: device: Field required"),
        ('sim = true\n[[device]]\nid = "a"\n', "device.0 (a): no profile"),
        (
            'profile = "relax"\n[[device]]\nid = "a"\n',
            "device.0 (a): a real massager needs its address",
        ),
        (
            'profile = "relax"\nsim = true\n[[device]]\nid = "a"\n[[device]]\nid = "a"\n',
            "id 'a' is given twice",
        ),
        (
            'profile = "relax"\nsim = true\n[[device]]\nid = "a b"\n',
            "device.0.id: String should match pattern",
        ),
        (
            'profile = "relax"\nsim = true\n[[device]]\nid = "a"\ncap = 11\n',
            "device.0.cap: Input should be less than or equal to 10",
        ),
        (
            'profile = "nope"\nsim = true\n[[device]]\nid = "a"\n',
            "device.0 (a): nope: no built-in profile",
        ),
        (
            'profile = "relax"\nsim = true\nbogus = 1\n[[device]]\nid = "a"\n',
            "bogus: Extra inputs are not permitted",
        ),
        ("[[[", "f.toml: not valid TOML"),
        (
            'profile = "relax"\nsim = true\n[[device]]\nid = "a"\nperson = "erin"\n'
            '[[device]]\nid = "b"\nperson = "erin"\n',
            "device.1 (b): erin already plays on a; one person's massagers play together",
        ),
        (
            'profile = "relax"\n[[device]]\nid = "a"\naddress = "AA:BB:CC:DD:EE:01"\nperson = "x"\n'
            '[[device]]\nid = "b"\naddress = "aa:bb:cc:dd:ee:01"\nperson = "y"\n',
            "device.1 (b): address aa:bb:cc:dd:ee:01 is a's too",
        ),
        (b"\x00\xff\xfe", "f.toml"),
    ],
)
def test_a_bad_fleet_file_is_one_line_per_problem_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, message: str
) -> None:
    path = tmp_path / "f.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    assert main(["fleet", str(path), "--mqtt", "off"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    assert all(line.startswith("massager: error: ") for line in err.splitlines())


def test_a_fifo_is_refused_without_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fleet.toml"
    os.mkfifo(fifo)
    assert main(["fleet", str(fifo)]) == 2
    assert "a named pipe" in capsys.readouterr().err


async def test_stop_all_over_mqtt_stops_every_session_of_the_fleet(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    path = tmp_path / "five.toml"
    path.write_text(FIVE)
    process = await start(
        "fleet", str(path), "--speed", "20", "--json", "--mqtt", mosquitto.url, "--no-journal"
    )
    async with make_client(mosquitto.settings, identifier="test-fleet") as client:
        await client.subscribe("massager/+/state", qos=1)
        running: set[str] = set()
        async with asyncio.timeout(30):
            async for message in client.messages:
                if json.loads(message.payload).get("state") == "running":
                    running.add(str(message.topic).split("/")[1])
                if len(running) == 5:
                    break
    stop = await start("stop", "--all", "--mqtt", mosquitto.url)
    _, stop_err = await asyncio.wait_for(stop.communicate(), 30)
    assert stop.returncode == 0, stop_err.decode()
    summary, err = await summary_of(process)
    assert process.returncode == 0, err
    assert summary["stop_reasons"] == {"remote_stop": 5}
    assert all(d["stop_confirmed"] for d in summary["devices"])


async def test_a_signal_stops_every_session_of_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "five.toml"
    path.write_text(FIVE)
    process = await start(
        "fleet", str(path), "--speed", "20", "--json", "--mqtt", "off", "--no-journal"
    )
    assert process.stderr is not None
    started = 0
    while started < 5:
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        started += b"session_started" in line
    process.send_signal(signal.SIGTERM)
    summary, err = await summary_of(process)
    assert process.returncode == 0, err
    assert summary["stop_reasons"] == {"user_stop": 5}


async def test_a_person_not_screened_is_refused_and_the_rest_of_the_fleet_plays(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.toml"
    path.write_text(
        'profile = "relax"\nsim = true\nmax_minutes = 0.5\n'
        '[[device]]\nid = "demo"\n'
        '[[device]]\nid = "carol"\nperson = "carol"\n'
    )
    process = await start("fleet", str(path), "--speed", "50", "--json", "--mqtt", "off")
    summary, err = await summary_of(process)
    assert process.returncode == 1, err  # one session did not play
    by_id = {d["id"]: d for d in summary["devices"]}
    assert by_id["demo"]["stop_reason"] == "timeout"  # played its half minute
    assert by_id["carol"]["stop_reason"] is None
    assert "has not answered the screening questions" in by_id["carol"]["problem"]
    assert "Traceback" not in err


async def test_a_screened_persons_fleet_session_enters_their_history(tmp_path: Path) -> None:
    setup = await start("setup", "--person", "dana", "--none-apply")
    assert await asyncio.wait_for(setup.wait(), 30) == 0
    path = tmp_path / "dana.toml"
    path.write_text(
        'profile = "relax"\nsim = true\nmax_minutes = 0.5\n'
        '[[device]]\nid = "dana"\nperson = "dana"\n'
    )
    process = await start("fleet", str(path), "--speed", "50", "--json", "--mqtt", "off")
    summary, err = await summary_of(process)
    assert process.returncode == 0, err
    assert summary["devices"][0]["stop_reason"] == "timeout"
    history = await start("history", "--person", "dana", "--json")
    out, _ = await asyncio.wait_for(history.communicate(), 30)
    (session,) = [json.loads(line) for line in out.decode().splitlines()]
    assert session["profile"] == "relax"
    assert session["stop_reason"] == "timeout"


async def test_a_demo_fleet_never_lands_in_a_real_persons_history(tmp_path: Path) -> None:
    demo = tmp_path / "demo.toml"
    demo.write_text('profile = "relax"\nsim = true\nmax_minutes = 0.5\n[[device]]\nid = "demo"\n')
    process = await start("fleet", str(demo), "--speed", "50", "--json", "--mqtt", "off")
    _, err = await summary_of(process)
    assert process.returncode == 0, err
    setup = await start("setup", "--person", "zed", "--none-apply")
    assert await asyncio.wait_for(setup.wait(), 30) == 0
    mine = tmp_path / "zed.toml"
    mine.write_text(
        'profile = "relax"\nsim = true\nmax_minutes = 0.5\n[[device]]\nid = "zed"\nperson = "zed"\n'
    )
    process = await start("fleet", str(mine), "--speed", "50", "--json", "--mqtt", "off")
    summary, err = await summary_of(process)
    assert process.returncode == 0, err  # zed's first session today: not refused
    assert summary["devices"][0]["stop_reason"] == "timeout"


async def test_a_persons_session_is_recorded_when_it_ends_not_when_the_fleet_does(
    tmp_path: Path,
) -> None:
    setup = await start("setup", "--person", "ines", "--none-apply")
    assert await asyncio.wait_for(setup.wait(), 30) == 0
    path = tmp_path / "two.toml"
    path.write_text(
        'profile = "relax"\nsim = true\n'
        '[[device]]\nid = "ines"\nperson = "ines"\nmax_minutes = 0.1\n'
        '[[device]]\nid = "long"\nmax_minutes = 5\n'
    )
    process = await start("fleet", str(path), "--speed", "20", "--mqtt", "off", "--no-journal")
    assert process.stderr is not None
    while b"[ines]" not in (line := await asyncio.wait_for(process.stderr.readline(), 30)) or (
        b"stop" not in line
    ):
        pass
    await asyncio.sleep(1.0)  # ines's session ended; the other plays on for minutes
    process.kill()  # no chance to finish anything more
    await process.wait()
    history = await start("history", "--person", "ines", "--json")
    out, _ = await asyncio.wait_for(history.communicate(), 30)
    (session,) = [json.loads(line) for line in out.decode().splitlines()]
    assert session["stop_reason"] == "timeout"  # finished in the store as it ended
