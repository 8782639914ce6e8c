"""MQTT brokers for tests: Debian's mosquitto from a temp dir, and the embedded amqtt broker.

Both listen on 127.0.0.1 only, on a free port. The fixtures are registered suite-wide by
`pytest_plugins = ("tests.brokers",)` in tests/conftest.py:

- `mosquitto`: a running mosquitto (skipped when it is not installed, failed when CI=true);
- `mosquitto_factory`: start several, or configured ones (`users=`, `extra_config=`);
- `embedded_broker`: a running `EmbeddedBroker`;
- `any_broker`: each of the two in turn, for tests that need only `.settings`.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import pytest

from firmware_bridge.telemetry.broker import LOOPBACK, EmbeddedBroker, broker_listening
from firmware_bridge.telemetry.mqtt import BrokerSettings

__all__ = [
    "MOSQUITTO_NOT_INSTALLED",
    "Mosquitto",
    "MosquittoFactory",
    "Received",
    "RunningBroker",
    "any_broker",
    "embedded_broker",
    "free_port",
    "mosquitto",
    "mosquitto_bin",
    "mosquitto_factory",
    "next_message",
    "require_mosquitto",
]

MOSQUITTO_NOT_INSTALLED = "mosquitto is not installed (apt-get install mosquitto)"
START_TIMEOUT_S = 5.0  # mosquitto listens within ~10 ms here; a loaded CI runner gets far more
STOP_TIMEOUT_S = 5.0  # SIGTERM → exit takes a few ms; past this the broker is SIGKILLed
POLL_S = 0.005  # how often start() checks whether the broker accepts connections yet
PORT_ATTEMPTS = 3  # a free port can be taken by someone else before mosquitto binds it
_SBIN = "/usr/sbin:/usr/local/sbin"  # Debian installs the broker here, often not on a user's PATH


def mosquitto_bin() -> str | None:
    """Path of the mosquitto broker executable, or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=_SBIN)


def _mosquitto_passwd_bin() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path=_SBIN)
    if found is None:
        raise FileNotFoundError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick; someone may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """Debian's mosquitto on 127.0.0.1 with its config, log and password file in `workdir`.

    `start()` picks a free port the first time and reuses it on every later start, so a test can
    stop (SIGTERM) or kill (SIGKILL) the broker and bring it back where its clients expect it.
    Anonymous clients are allowed unless `users` ({name: password}) is given. `close()` (or
    leaving the `with` block) stops it and removes a temp dir it created.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        found = binary or mosquitto_bin()
        if found is None:
            raise FileNotFoundError(MOSQUITTO_NOT_INSTALLED)
        self._binary = found
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="mosquitto-")
            workdir = Path(self._tempdir.name)
        self.workdir = workdir
        self.users = dict(users or {})
        self.extra_config = list(extra_config)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("mosquitto has no port before its first start()")
        return self._port

    @property
    def settings(self) -> BrokerSettings:
        """Where to connect, without credentials (see `settings_as`)."""
        return BrokerSettings(host=LOOPBACK, port=self.port)

    def settings_as(self, user: str) -> BrokerSettings:
        """`settings` with the name and password of one of `users`."""
        return replace(self.settings, username=user, password=self.users[user])

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """The broker's log so far (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> Self:
        """Start the broker (on the same port as before, if it ran before) and wait until it
        accepts connections."""
        if self.running:
            raise RuntimeError(f"mosquitto is already running on port {self._port}")
        if self._port is not None:
            self._launch(self._port)
            return self
        attempts_left = PORT_ATTEMPTS
        while True:
            port = free_port()
            try:
                self._launch(port)
            except RuntimeError:
                attempts_left -= 1
                if not attempts_left or "Address already in use" not in self.log_text():
                    raise
            else:
                self._port = port
                return self

    def stop(self) -> None:
        """SIGTERM (a clean broker shutdown) and wait; SIGKILL if it does not exit in time."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything itself."""
        self._end(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Mosquitto {LOOPBACK}:{self._port} {state} in {self.workdir}>"

    def _write_config(self, port: int) -> None:
        lines = [
            f"listener {port} {LOOPBACK}",
            # As root, mosquitto would switch to the "mosquitto" user, which cannot write to our
            # 0700 temp dir; name the current user instead (a no-op when not root).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "set_tcp_nodelay true",  # as in production: Nagle adds 40+ ms to command round trips
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %H:%M:%S",
        ]
        if self.users:
            password_file = self.workdir / "passwords"
            self._write_passwords(password_file)
            lines += [f"password_file {password_file}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        lines += self.extra_config
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _write_passwords(self, path: Path) -> None:
        passwd = _mosquitto_passwd_bin()
        for index, (name, password) in enumerate(self.users.items()):
            create = ["-c"] if index == 0 else []  # -c starts a new file; later users append
            subprocess.run(
                [passwd, "-b", *create, str(path), name, password],
                check=True,
                capture_output=True,
                timeout=STOP_TIMEOUT_S,
            )

    def _launch(self, port: int) -> None:
        self._write_config(port)
        with (self.workdir / "mosquitto.stderr").open("ab") as stderr:
            self._process = subprocess.Popen(
                [self._binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not broker_listening(LOOPBACK, port, timeout=POLL_S * 10):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                raise RuntimeError(
                    f"mosquitto did not start on {LOOPBACK}:{port} within {START_TIMEOUT_S} s; "
                    f"its log:\n{self.log_text()}"
                )
            time.sleep(POLL_S)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(how)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def require_mosquitto() -> str:
    """The mosquitto executable; skip the test without it, or fail it on CI (CI=true)."""
    binary = mosquitto_bin()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MOSQUITTO_NOT_INSTALLED}: CI must run the broker tests", pytrace=False)
        pytest.skip(MOSQUITTO_NOT_INSTALLED)
    return binary


class MosquittoFactory(Protocol):
    def __call__(
        self, *, users: Mapping[str, str] | None = None, extra_config: Sequence[str] = ()
    ) -> Mosquitto: ...


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    """Start brokers inside a test: `mosquitto_factory(users={"alice": "s3cret"})`."""
    binary = require_mosquitto()
    with ExitStack() as cleanup:

        def start(
            *, users: Mapping[str, str] | None = None, extra_config: Sequence[str] = ()
        ) -> Mosquitto:
            broker = Mosquitto(
                tmp_path_factory.mktemp("mosquitto"),
                users=users,
                extra_config=extra_config,
                binary=binary,
            )
            cleanup.callback(broker.close)
            return broker.start()

        yield start


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A running mosquitto allowing anonymous clients (log in `mosquitto.workdir`)."""
    return mosquitto_factory()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """A running embedded (amqtt) broker on a free loopback port."""
    async with EmbeddedBroker(port=0) as broker:
        yield broker


class RunningBroker(Protocol):
    @property
    def settings(self) -> BrokerSettings: ...


@pytest.fixture(params=["mosquitto", "embedded"])
async def any_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningBroker]:
    """mosquitto, then the embedded broker: for tests that only connect to a broker."""
    if request.param == "mosquitto":
        workdir = tmp_path_factory.mktemp("mosquitto")
        with Mosquitto(workdir, binary=require_mosquitto()) as broker:
            yield broker
    else:
        async with EmbeddedBroker(port=0) as embedded:
            yield embedded


@dataclass(frozen=True)
class Received:
    """One MQTT message as a test sees it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


async def next_message(client: Any, *, timeout_s: float = 2.0) -> Received:
    """The next message `client` receives (an aiomqtt client from `make_client`, typed Any
    because only firmware_bridge.telemetry.mqtt imports aiomqtt)."""
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            payload = message.payload
            return Received(
                topic=str(message.topic),
                payload=bytes(payload)
                if isinstance(payload, bytes | bytearray)
                else str(payload).encode(),
                qos=int(message.qos),
                retain=bool(message.retain),
            )
    raise AssertionError("the client disconnected before a message arrived")
