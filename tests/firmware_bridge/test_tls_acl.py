"""mqtts, a password file and an ACL: mosquitto set up the way a careful home install is.

Everything is made in the test: a private CA and the broker's certificate, the password file
and an ACL that gives each user only what it needs (docs/security.md):

- `ctl`, the controller, may write its own device's availability, state, telemetry and events,
  read back its availability and state (the claim check and the ACL probe) and read its
  `cmd/#`;
- `watch` (massager monitor) may read `massager/#`;
- `stopper` (massager stop) may read availability, state and events and write `cmd/stop`;
- `admin` reads everything, to check what went over the wire.

The real CLI runs as a subprocess: run, monitor and stop work over mqtts; a wrong CA or host
name is one line; a device id the ACL forbids is refused at start; and the password is found
nowhere it should not be (outputs, journals, outboxes, the wire, the process's command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware_bridge.errors import DeviceIdForbiddenError
from firmware_bridge.journal import data_dir
from firmware_bridge.telemetry.claim import PROBE_S
from firmware_bridge.telemetry.mqtt import (
    ENV_PASSWORD,
    ENV_USERNAME,
    BrokerSettings,
    BrokerURLError,
    MqttError,
    make_client,
)
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.payloads import StatePayload
from firmware_bridge.telemetry.publisher import Publisher
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import CertificateAuthority, Mosquitto, MosquittoFactory
from tests.mqtt_sessions import send
from tests.rigs import until

pytestmark = [pytest.mark.sim_only, pytest.mark.timeout(90)]

# The controller's; distinctive, so that a search finds any leak.
PASSWORD = "pw-Zq81-secret"  # noqa: S105 - a test broker's, made for this test
USERS = {
    "ctl": PASSWORD,
    "watch": "pw-watch-Kd27-secret",
    "stopper": "pw-stop-Hx55-secret",
    "admin": "pw-admin-Lm40-secret",
}
DEVICE = "kitchen"  # the id the ACL gives the controller
FORBIDDEN = "other"  # an id it does not
MUTE = "mute"  # an id whose commands it may hear but under which it may not publish
CTL_AVAILABILITY = f"topic readwrite massager/{DEVICE}/availability"
CTL_STATE = f"topic readwrite massager/{DEVICE}/state"
ACL = [
    "user ctl",
    CTL_AVAILABILITY,  # online/offline, and read back: claim check and ACL probe
    CTL_STATE,  # the claim check reads the retained state; the ACL probe reads its own back
    f"topic write massager/{DEVICE}/telemetry",
    f"topic write massager/{DEVICE}/events",
    f"topic read massager/{DEVICE}/cmd/#",
    f"topic write homeassistant/device/{DEVICE}/config",  # --ha-discovery
    f"topic read massager/{MUTE}/#",
    "",
    "user watch",
    "topic read massager/#",
    "",
    "user stopper",
    "topic read massager/+/availability",
    "topic read massager/+/state",
    "topic read massager/+/events",
    "topic write massager/+/cmd/stop",
    "",
    "user admin",
    "topic readwrite #",
]
RUN = ("run", "relax", "--sim", "--sim-tier", "memory", "--json")
SHORT = ("--speed", "50", "--max-minutes", "0.5")  # 30 simulated seconds: 0.6 s
STOPPABLE = ("--speed", "5", "--max-minutes", "1")  # 12 s unless stopped: time to stop it
CLI_S = 30.0  # one CLI command; they take 1-3 s here


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca")


@pytest.fixture
def broker(mosquitto_factory: MosquittoFactory, ca: CertificateAuthority) -> Mosquitto:
    """mosquitto with TLS only (a certificate for 127.0.0.1 and localhost), passwords, the ACL."""
    return mosquitto_factory(users=USERS, acl=ACL, tls=ca.issue())


# -- running the CLI ---------------------------------------------------------------------------


@dataclass
class Outputs:
    """Everything the commands of one test printed, for the search for the password."""

    texts: list[str] = field(default_factory=list)

    def add(self, *texts: str) -> None:
        self.texts.extend(texts)


def _env(user: str | None = None) -> dict[str, str]:
    """This process's environment (with the test's MASSAGER_DATA_DIR) and `user`'s login."""
    env = {k: v for k, v in os.environ.items() if k not in {ENV_USERNAME, ENV_PASSWORD}}
    if user is not None:
        env |= {ENV_USERNAME: user, ENV_PASSWORD: USERS[user]}
    return env


def _config(tmp_path: Path, broker: Mosquitto, user: str, ca_file: Path | None = None) -> str:
    """A 0600 `--mqtt-config` file with `user`'s login and the CA."""
    path = tmp_path / f"{user}.toml"
    ca = ca_file or broker.settings.ca_file
    path.write_text(
        f'[mqtt]\nurl = "{broker.url}"\nusername = "{user}"\npassword = "{USERS[user]}"\n'
        f'ca_file = "{ca}"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    return str(path)


def _login(
    how: str, tmp_path: Path, broker: Mosquitto, user: str
) -> tuple[list[str], dict[str, str]]:
    """Broker flags and environment for `user`: from the environment or a config file."""
    if how == "env":
        return ["--mqtt", broker.url, "--mqtt-ca", str(broker.settings.ca_file)], _env(user)
    return ["--mqtt-config", _config(tmp_path, broker, user)], _env()


async def _start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_bridge",
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(process: asyncio.subprocess.Process, seen: Outputs) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), CLI_S)
    assert process.returncode is not None
    seen.add(out.decode(), err.decode())
    return process.returncode, out.decode(), err.decode()


async def _cli(argv: list[str], env: dict[str, str], seen: Outputs) -> tuple[int, str, str]:
    return await _finish(await _start(argv, env), seen)


def _command_line(pid: int) -> bytes:
    """What `ps` shows for `pid` (Linux): its arguments, NUL-separated."""
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _error_lines(err: str) -> list[str]:
    """What the command said beyond the safety notice `run` always prints first."""
    return [line for line in err.splitlines() if line.startswith(("massager", "WARNING", "ERROR"))]


# -- what went over the wire and onto the disk -------------------------------------------------


@dataclass
class Wire:
    """Every message under `massager/#` (and Home Assistant's), as the admin user sees it."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def states(self, device_id: str) -> list[str]:
        found = []
        for topic, payload in self.messages:
            if topic == f"massager/{device_id}/state" and payload:
                found.append(str(json.loads(payload)["state"]))
        return found


@contextlib.asynccontextmanager
async def wiretap(settings: BrokerSettings) -> AsyncIterator[Wire]:
    wire = Wire()

    async def listen() -> None:
        async with make_client(settings, identifier=f"test-wiretap-{time.monotonic_ns()}") as c:
            await c.subscribe("massager/#", qos=1)
            await c.subscribe("homeassistant/#", qos=1)
            wire.ready.set()
            async for message in c.messages:
                payload = message.payload
                raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
                wire.messages.append((str(message.topic), bytes(raw)))

    task = asyncio.create_task(listen(), name="test wiretap")
    await asyncio.wait_for(wire.ready.wait(), 5)
    try:
        yield wire
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MqttError):
            await task


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _places_holding(secret: str, places: dict[str, bytes | str]) -> list[str]:
    needle = secret.encode()
    return [
        name
        for name, content in places.items()
        if needle in (content if isinstance(content, bytes) else content.encode())
    ]


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["env", "config"])
async def test_run_monitor_and_stop_over_mqtts_with_passwords_and_an_acl(
    broker: Mosquitto, tmp_path: Path, how: str
) -> None:
    seen = Outputs()
    async with wiretap(broker.settings_as("admin")) as wire:
        flags, env = _login(how, tmp_path, broker, "ctl")
        # Once to completion, as a person would first try it, with every log line (-vv) ...
        argv = ["-vv", *RUN, *SHORT, "--device-id", DEVICE, *flags]
        code, out, err = await _cli(argv, env, seen)
        assert code == 0, err
        assert "DEBUG" in err
        assert json.loads(out)["stop_reason"] == "timeout"
        assert [line for line in _error_lines(err) if "MQTT" in line] == [], err
        # ... then once more, watched and stopped remotely.
        argv = [*RUN, *STOPPABLE, "--device-id", DEVICE, "--ha-discovery", *flags]
        running = await _start(argv, env)
        try:
            await until(lambda: wire.states(DEVICE)[-1:] == ["running"], within=CLI_S)
            cmdline = _command_line(running.pid)
            assert b"run\0relax" in cmdline  # the right process ...
            assert PASSWORD.encode() not in cmdline  # ... and `ps` cannot show the password

            flags, env = _login(how, tmp_path, broker, "watch")
            code, out, err = await _cli(["monitor", "--once", *flags], env, seen)
            assert (code, err) == (0, ""), err
            assert any(line.split()[:2] == [DEVICE, "online"] for line in out.splitlines()), out
            assert "running" in out

            flags, env = _login(how, tmp_path, broker, "stopper")
            code, out, err = await _cli(["stop", "--device-id", DEVICE, *flags], env, seen)
            assert (code, err) == (0, ""), err
            assert out.startswith(f"{DEVICE}: stopped; the device confirmed zero in ")
        finally:
            code, out, err = await _finish(running, seen)
        assert json.loads(out)["stop_reason"] == "remote_stop", err
        assert code == 0
        await until(lambda: wire.states(DEVICE)[-1:] == ["stopped"])
    kinds = {topic.rsplit("/", 1)[-1] for topic, _ in wire.messages}
    assert {"availability", "state", "telemetry", "events", "config"} <= kinds  # all went out
    disk = _files_under(data_dir())
    assert any(name.startswith("sessions/") for name in disk)  # journals were written
    assert any(name.startswith(f"outbox/{DEVICE}/") for name in disk)
    places: dict[str, bytes | str] = {f"output {i}": text for i, text in enumerate(seen.texts)}
    places |= {f"file {name}": content for name, content in disk.items()}
    places |= {f"message {i} on {t}": p for i, (t, p) in enumerate(wire.messages)}
    for secret in USERS.values():
        assert _places_holding(secret, places) == [], secret


async def test_a_device_id_the_acl_forbids_is_refused_at_start_in_one_line(
    broker: Mosquitto,
) -> None:
    seen = Outputs()
    flags = ["--mqtt", broker.url, "--mqtt-ca", str(broker.settings.ca_file)]
    started = time.monotonic()
    code, out, err = await _cli([*RUN, *SHORT, "--device-id", FORBIDDEN, *flags], _env("ctl"), seen)
    took = time.monotonic() - started
    assert code == 2, err
    assert out == ""  # no summary: no session ran
    assert "Playing" not in err
    assert "Traceback" not in err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("massager: error: ")
    for words in (f"massager/{FORBIDDEN}/state", "'ctl'", "check the broker's ACL"):
        assert words in lines[0]
    assert PASSWORD not in err
    assert not (data_dir() / "sessions").exists()  # no journal: the session never began
    assert took < 15  # the probe is bounded (PROBE_S); interpreter start-up is the rest


async def test_a_forbidden_device_id_still_hears_stops(broker: Mosquitto) -> None:
    """The ACL lets `ctl` read `mute`'s commands but not publish as it: refused at start,
    and the stop lane keeps listening until the publisher closes."""
    publisher = Publisher(broker.settings_as("ctl"), Topics(MUTE), outbox=Outbox(None))
    serving = asyncio.create_task(publisher.run())
    try:
        with pytest.raises(DeviceIdForbiddenError, match=r"massager/mute/state") as info:
            await publisher.wait_claimed(5)
        assert info.value.device_id == MUTE
        assert publisher.stats.connects == 0
        await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
        await send(broker.settings_as("stopper"), Topics(MUTE).command("stop"), b"{}")
        await until(lambda: publisher.stops.stats.received >= 1)
    finally:
        await publisher.close()
        await asyncio.wait_for(serving, 5)


async def test_the_probe_costs_an_ordinary_start_only_the_echo(broker: Mosquitto) -> None:
    publisher = Publisher(broker.settings_as("ctl"), Topics(DEVICE), outbox=Outbox(None))
    serving = asyncio.create_task(publisher.run())
    try:
        assert await publisher.wait_claimed(5)
        assert publisher.connected.is_set()
        probe_s = publisher.stats.probe_s
        assert probe_s is not None
        # Milliseconds on loopback (the log below says how many); nowhere near the bound.
        logging.getLogger(__name__).info("ACL probe echo: %.2f ms", probe_s * 1000)
        assert probe_s < min(1.0, PROBE_S)
    finally:
        await publisher.close()
        await asyncio.wait_for(serving, 5)


async def test_an_acl_that_forbids_the_id_after_a_reconnect_is_an_outage_with_a_warning(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The session runs already: the controller keeps trying (the ACL may be fixed), says so,
    publishes nothing it cannot read back, and keeps hearing stops."""
    topics = Topics(DEVICE)
    publisher = Publisher(broker.settings_as("ctl"), topics, outbox=Outbox(None))
    serving = asyncio.create_task(publisher.run())
    try:
        assert await publisher.wait_claimed(5)
        publisher.state(StatePayload(state="running", profile="relax", ts=1.0))
        broker.stop()
        assert broker.acl is not None
        broker.acl[broker.acl.index(CTL_STATE)] = CTL_STATE.replace("readwrite", "read")
        broker.start()  # same port; the controller may no longer publish its state
        await until(lambda: publisher.stats.outages >= 2, within=20)
        warnings = [r for r in caplog.records if "ACL" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert warnings[0].levelno == logging.WARNING
        assert publisher.refusal is None  # not given up on: an outage
        assert not publisher.connected.is_set()  # no telemetry while it lasts ...
        assert publisher.stats.connects == 1
        await asyncio.wait_for(publisher.stop_lane_ready.wait(), 10)  # ... but stops are heard
        await send(broker.settings_as("stopper"), topics.command("stop"), b"{}")
        await until(lambda: publisher.stops.stats.received >= 1)
    finally:
        await publisher.close()
        await asyncio.wait_for(serving, 5)
    assert PASSWORD not in caplog.text


# -- certificates that do not fit ------------------------------------------------------------


def _argv(command: str, url: str, ca_file: Path, device_id: str = DEVICE) -> list[str]:
    flags = ["--mqtt", url, "--mqtt-ca", str(ca_file)]
    if command == "run":
        return [*RUN, *SHORT, "--device-id", device_id, *flags]
    if command == "monitor":
        return ["monitor", "--once", *flags]
    return ["stop", "--device-id", device_id, "--timeout", "1", *flags]


def _one_clear_line(code: int, out: str, err: str) -> str:
    assert code in {1, 2}, err
    assert out == ""
    assert "Traceback" not in err
    assert "Playing" not in err  # `run` refused before the session
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("massager: error: ")
    assert PASSWORD not in err
    return lines[0]


@pytest.mark.parametrize("command", ["run", "monitor", "stop"])
async def test_a_wrong_ca_is_one_clear_line(
    broker: Mosquitto, tmp_path: Path, command: str
) -> None:
    stranger = CertificateAuthority(tmp_path / "stranger", name="some other CA")
    # The password in the URL this time: visible in `ps`, as documented, but never echoed.
    url = broker.url.replace("://", f"://ctl:{PASSWORD}@")
    code, out, err = await _cli(_argv(command, url, stranger.ca_file), _env(), Outputs())
    line = _one_clear_line(code, out, err)
    assert "certificate verify failed" in line or "does not verify" in line
    assert "ctl@127.0.0.1" in line  # which broker, as which user


@pytest.mark.parametrize("command", ["run", "monitor", "stop"])
async def test_a_host_name_the_certificate_does_not_name_is_one_clear_line(
    mosquitto_factory: MosquittoFactory, ca: CertificateAuthority, command: str
) -> None:
    broker = mosquitto_factory(users=USERS, acl=ACL, tls=ca.issue(["localhost"], stem="named"))
    code, out, err = await _cli(_argv(command, broker.url, ca.ca_file), _env("ctl"), Outputs())
    line = _one_clear_line(code, out, err)
    assert "mismatch" in line
    assert "127.0.0.1" in line


# -- passwords in URLs that do not parse ------------------------------------------------------

BROKEN_URLS = [
    f"mqtt://ctl:{PASSWORD}@host:99999",
    f"MQTTS://ctl:{PASSWORD}@exa mple",  # an upper-case scheme
    "mqtt://ctl:pw-Zq81/secret@host",  # '/' ends the host part: the password looks like a path
    "mqtt://ctl:pw-Zq81?secret@host",  # '?' and '#' too, leaving "pw-Zq81" as the port
    "mqtt://ctl:pw-Zq81#secret@host",
    "mqtt://ctl:pw@Zq81-secret@host:0",  # '@' in the password
    f"ftp://ctl:{PASSWORD}@host",
    f"mqtt://ctl:{PASSWORD}@[::1",
    f"mqtt://ctl:{PASSWORD}",  # the host forgotten: the password looks like the port
    f"mqtt://ctl@host:{PASSWORD}",  # typed where the port goes, after the host
]


@pytest.mark.parametrize("url", BROKEN_URLS, ids=range(len(BROKEN_URLS)))
def test_a_password_in_a_url_that_is_refused_is_never_echoed(url: str) -> None:
    with pytest.raises(BrokerURLError) as info:
        BrokerSettings.from_url(url, env={})
    message = str(info.value)
    for part in ("Zq81", "secret"):  # no piece of it either
        assert part not in message, message
    assert "ctl" in message  # the user name is not secret: it helps find the mistake
