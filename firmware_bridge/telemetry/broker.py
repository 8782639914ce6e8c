"""Which MQTT broker to use (`--mqtt URL|embedded|off`) and the embedded one (amqtt) for demos.

The embedded broker runs amqtt 0.12 in-process on loopback only. amqtt is imported lazily (in a
worker thread: its import takes 90-200 ms) so that `massager` without `--mqtt embedded` never pays
for it and the event loop never stalls on it.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from firmware_bridge.errors import MassagerError
from firmware_bridge.telemetry.mqtt import BrokerSettings

__all__ = [
    "BrokerChoice",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "broker_listening",
    "choose_broker",
]

_log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 1883  # the IANA MQTT port: a local mosquitto or Home Assistant's broker is here
PROBE_TIMEOUT_S = 0.2  # a loopback connect answers in microseconds; this only bounds a wedged stack
HANDLER_EXIT_S = 1.0  # a connection handler returns within ms of its socket closing; bounded anyway
# amqtt logs every connection at INFO and its state machine library (transitions) every state
# change; both stay at WARNING unless the application set a level on them itself.
_CHATTY_LOGGERS = ("amqtt", "transitions")


class EmbeddedBrokerError(MassagerError):
    """The embedded broker could not start (usually: the port is taken); the message says why."""


class _AmqttNoise(logging.Filter):
    """Drop amqtt's ERROR records that are not errors for us.

    "No data from ...": a connection closed before CONNECT, i.e. a port probe. "Broker startup
    failed" (with a traceback): `EmbeddedBroker` raises `EmbeddedBrokerError` saying the same.
    """

    NOISE = (
        "No data from ",
        "Failed to initialize client session: No data",
        "Broker startup failed",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        # amqtt formats its messages with f-strings: the whole text is in `msg`.
        return not str(record.msg).startswith(self.NOISE)


_AMQTT_NOISE = _AmqttNoise()


def _quiet_amqtt_logging() -> None:
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # NOTSET: nobody configured it, so it is ours to set
            logger.setLevel(logging.WARNING)
    logging.getLogger("amqtt.broker").addFilter(_AMQTT_NOISE)  # idempotent


class _Connections:
    """amqtt's per-connection handler, wrapped so no socket or task outlives its connection.

    amqtt 0.12 leaves the socket open when a client closes before sending CONNECT (a port probe
    such as `broker_listening`): the transport then leaks until garbage collection reports a
    ResourceWarning (an error under `-W error`). And on Python 3.11 closing the listener does not
    wait for connection handlers, so a connection still before CONNECT would outlive shutdown.
    """

    def __init__(self, handler: Callable[..., Awaitable[None]]) -> None:
        self._handler = handler
        self._open: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        task = asyncio.current_task()  # asyncio.start_server runs each handler in its own task
        if task is not None:
            self._open[task] = writer
        try:
            await self._handler(reader, writer, listener_name=listener_name)
        finally:
            if task is not None:
                del self._open[task]
            writer.close()  # idempotent: after a normal session amqtt has closed it already

    async def close(self) -> None:
        """End the connections amqtt's shutdown does not know about (not yet past CONNECT)."""
        # Closing the socket makes the handler read EOF and return. Cancelling it instead would
        # make asyncio's stream protocol log the CancelledError as an unhandled exception.
        for writer in self._open.values():
            writer.close()
        if self._open:
            _, stuck = await asyncio.wait(list(self._open), timeout=HANDLER_EXIT_S)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)


def _amqtt_config(port: int) -> dict[str, Any]:
    """amqtt 0.12 `BrokerConfig` as a dict: loopback only, anonymous, no chatty plugins."""
    return {
        # amqtt's default bind is 0.0.0.0:1883 (every interface); a demo broker must not be
        # reachable from the network. Port 0 lets the kernel pick a free port (race-free).
        "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
        # Giving `plugins` replaces amqtt's defaults: the event/packet loggers (noise) and the
        # $SYS publisher (a task waking every 20 s) are left out; anonymous clients are allowed.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _bound_port(broker: Any) -> int:
    """The port the kernel gave amqtt's listener (for port 0).

    amqtt has no public accessor for its listening sockets; `_servers` is stable across 0.12.x,
    which pyproject pins, and tests/firmware_bridge/test_broker.py covers it.
    """
    try:
        sockets = broker._servers["default"].instance.sockets
        return int(sockets[0].getsockname()[1])
    except (AttributeError, KeyError, IndexError, TypeError) as exc:
        raise EmbeddedBrokerError(
            "cannot read the embedded broker's port from amqtt (not 0.12?); pass an explicit port"
        ) from exc


class EmbeddedBroker:
    """amqtt's MQTT 3.1.1 broker in this process, on 127.0.0.1 only, allowing anonymous clients.

    `port=0` picks a free loopback port; read it from `.port` or `.settings` inside the block.
    Reusable (a new port each time with `port=0`), not re-entrant.

        async with EmbeddedBroker(port=0) as broker:
            async with make_client(broker.settings, identifier="demo") as client: ...
    """

    def __init__(self, port: int = DEFAULT_PORT) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"embedded broker port {port}: use 1-65535, or 0 for any free port")
        self._requested_port = port
        self._port: int | None = None
        self._broker: Any = None  # amqtt.broker.Broker while running (amqtt ships no type hints)
        self._connections: _Connections | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        """The listening port (the one the kernel picked when constructed with port 0)."""
        if self._port is not None:
            return self._port
        if self._requested_port == 0:
            raise RuntimeError("EmbeddedBroker(port=0) has a port only while it runs")
        return self._requested_port

    @property
    def settings(self) -> BrokerSettings:
        return BrokerSettings(host=LOOPBACK, port=self.port)

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def __aenter__(self) -> Self:
        if self._broker is not None:
            raise RuntimeError("EmbeddedBroker is already running (not re-entrant)")
        _quiet_amqtt_logging()
        amqtt_broker = await asyncio.to_thread(importlib.import_module, "amqtt.broker")
        broker = amqtt_broker.Broker(_amqtt_config(self._requested_port))
        connections = _Connections(broker.stream_connected)
        broker.stream_connected = connections  # amqtt's listener looks it up when it starts
        try:
            await broker.start()
        except amqtt_broker.BrokerError as exc:
            cause = exc.__cause__
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
            raise EmbeddedBrokerError(
                f"embedded MQTT broker cannot listen on {LOOPBACK}:{self._requested_port}: "
                f"{reason}; if a broker is already there, use it with "
                f"--mqtt mqtt://{LOOPBACK}:{self._requested_port}"
            ) from exc
        self._broker, self._connections = broker, connections
        try:
            self._port = _bound_port(broker)
        except BaseException:
            await self._shutdown()
            raise
        _log.info("embedded MQTT broker listening on %s:%d", LOOPBACK, self._port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        broker, self._broker = self._broker, None
        connections, self._connections = self._connections, None
        self._port = None
        if broker is None:
            return
        try:
            # Ends every client session (connected clients see the TCP close), closes the
            # listener and awaits amqtt's own tasks.
            await broker.shutdown()
        finally:
            if connections is not None:
                await connections.close()
        _log.debug("embedded MQTT broker on %s stopped", LOOPBACK)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def broker_listening(
    host: str = LOOPBACK, port: int = DEFAULT_PORT, timeout: float = PROBE_TIMEOUT_S
) -> bool:
    """Whether something accepts TCP connections on a loopback `host:port` (blocking, ≤ timeout).

    Loopback only: probing a remote host could block on DNS or a silent firewall for far longer.
    """
    if not _is_loopback(host):
        raise ValueError(f"broker_listening probes loopback addresses only, not {host!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class BrokerChoice:
    """What `--mqtt` resolved to: no telemetry, the embedded broker, or a broker at `settings`."""

    kind: Literal["off", "embedded", "url"]
    settings: BrokerSettings | None = None  # set only for kind "url"


def choose_broker(
    spec: str | None,
    *,
    sim: bool,
    probe: Callable[[str, int], bool] = broker_listening,
    env: dict[str, str] | None = None,
) -> BrokerChoice:
    """Resolve `--mqtt`: `off`, `embedded`, a URL (`mqtt://`, `mqtts://`, `host[:port]`), or None.

    None (no flag) means: with `--sim`, a broker already on localhost:1883 if one answers (so a
    running mosquitto or Home Assistant sees the demo), else the embedded broker; without
    `--sim`, no telemetry. A bad URL raises `BrokerURLError`. Only `probe` touches the network;
    `env` (credentials, see `BrokerSettings.from_url`) defaults to os.environ. Both are
    injectable for tests.
    """
    if spec is None:
        if not sim:
            return BrokerChoice("off")
        if probe(LOOPBACK, DEFAULT_PORT):
            url = f"mqtt://{LOOPBACK}:{DEFAULT_PORT}"
            return BrokerChoice("url", BrokerSettings.from_url(url, env=env))
        return BrokerChoice("embedded")
    keyword = spec.strip().lower()
    if keyword in {"off", "embedded"}:
        return BrokerChoice("off" if keyword == "off" else "embedded")
    return BrokerChoice("url", BrokerSettings.from_url(spec, env=env))
