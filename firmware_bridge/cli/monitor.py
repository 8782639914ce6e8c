"""`massager monitor`: watch massagers over MQTT (the topics of docs/mqtt.md)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO, TypeVar

from firmware_bridge.cli.display import bar, mmss
from firmware_bridge.cli.mqtt_options import add_broker_arguments, settings_from_args
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, make_client
from firmware_bridge.telemetry.payloads import EventPayload, StatePayload, TelemetryPayload
from firmware_bridge.telemetry.topics import (
    Topics,
    all_devices,
    split,
    valid_device_id,
)

__all__ = [
    "Change",
    "DeviceView",
    "add_monitor_commands",
    "apply_message",
    "render_table",
]

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
REDRAW_S = 0.25  # the live table redraws at most 4 times a second: readable, cheap over SSH
ONCE_MAX_S = 1.0  # --once: retained messages follow the SUBACK; never wait longer than this
ONCE_QUIET_S = 0.3  # ... and stop early once the broker has been silent this long
BACKOFF_FIRST_S = 0.5  # reconnect delay: doubles from this ...
BACKOFF_MAX_S = 30.0  # ... up to this
BAD = "(bad payload)"
SEGMENT_WIDTH = 20  # characters of a segment label shown in the table
KINDS = ("availability", "state", "telemetry", "events")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
ACTIVE = {"running", "paused"}  # states in which the commanded intensity means something
# Subscribing to a fleet brings every device's retained availability and state at once, and
# 1,000 devices send 2,000 telemetry messages a second: aiomqtt's default queue of 1,000 drops
# the rest. The monitor reads promptly; this bounds memory (about 1 KiB a message) at a burst.
MAX_QUEUED = 50_000

_T = TypeVar("_T")


@dataclass
class DeviceView:
    """What the monitor knows about one device, from its retained and live topics."""

    device_id: str
    availability: str | None = None
    state: StatePayload | None = None
    telemetry: TelemetryPayload | None = None
    last_event: str | None = None
    stop_reason: str | None = None
    last_rating: int | None = None
    bad: set[str] = field(default_factory=set)  # topic kinds whose latest payload did not parse


class Change(NamedTuple):
    device_id: str
    kind: str
    summary: str


def _text(payload: object) -> str:
    if payload is None:
        return ""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload).decode("utf-8")  # UnicodeDecodeError is a ValueError
    return str(payload)


def _summary(view: DeviceView, kind: str, text: str) -> str:
    """Parse one payload into `view`; raises ValueError (pydantic's included) if malformed."""
    if kind == "availability":
        if text not in {"online", "offline"}:
            raise ValueError(text)
        view.availability = text
        return text
    if kind == "state":
        if not text:  # retained state cleared
            view.state = None
            return "cleared"
        state = StatePayload.model_validate_json(text)
        view.state, view.stop_reason = state, state.stop_reason
        reason = f" stop_reason={state.stop_reason}" if state.stop_reason else ""
        return f"{state.state} profile={state.profile or '-'}{reason}"
    if kind == "telemetry":
        sample = TelemetryPayload.model_validate_json(text)
        view.telemetry = sample
        if sample.nrs is not None:
            view.last_rating = sample.nrs
        battery = "?" if sample.battery is None else f"{sample.battery}%"
        rating = "-" if sample.nrs is None else str(sample.nrs)
        return (
            f"segment={sample.segment} intensity={sample.intensity:.0%} "
            f"applied={sample.applied:.0%} battery={battery} rating={rating}"
        )
    event = EventPayload.model_validate_json(text)
    detail = event.model_extra or {}
    view.last_event = event.type
    if event.type == "stop" and detail.get("reason"):
        view.stop_reason = str(detail["reason"])
    if event.type == "discomfort" and isinstance(detail.get("nrs"), int):
        view.last_rating = detail["nrs"]
    shown = " ".join(f"{k}={v}" for k, v in detail.items())
    return f"{event.type} {shown}".rstrip()


def apply_message(
    views: MutableMapping[str, DeviceView], topic: str, payload: object, prefix: str
) -> Change | None:
    """Fold one MQTT message into `views`; None if the topic is not a device topic we show."""
    parts = split(topic, prefix)
    if parts is None or parts[1] not in KINDS or not valid_device_id(parts[0]):
        return None
    device_id, kind = parts
    view = views.setdefault(device_id, DeviceView(device_id))
    try:
        summary = _summary(view, kind, _text(payload))
    except ValueError:
        view.bad.add(kind)
        return Change(device_id, kind, BAD)
    view.bad.discard(kind)
    return Change(device_id, kind, summary)


HEADER = (
    "DEVICE",
    "LINK",
    "STATE",
    "PROFILE",
    "SEGMENT",
    "CMD / APPLIED",
    "LEFT",
    "BATTERY",
    "RATING",
    "STOP REASON",
)


def _row(view: DeviceView) -> tuple[str, ...]:
    state, sample = view.state, view.telemetry
    link = BAD if "availability" in view.bad else view.availability or "?"
    status = BAD if "state" in view.bad else state.state if state else "?"
    profile = (state.profile if state else None) or "-"
    active = state is None or state.state in ACTIVE
    segment, intensity, left = "-", "-", "-"
    if "telemetry" in view.bad:
        segment = BAD
    elif sample is not None and active:
        segment, left = sample.segment[:SEGMENT_WIDTH], mmss(sample.remaining_s)
        intensity = f"{bar(sample.intensity, 10)} {sample.intensity:4.0%} / {sample.applied:4.0%}"
    battery = "?" if sample is None or sample.battery is None else f"{sample.battery}%"
    rating = "-" if view.last_rating is None else str(view.last_rating)
    reason = view.stop_reason or "-"
    return view.device_id, link, status, profile, segment, intensity, left, battery, rating, reason


def render_table(views: Iterable[DeviceView]) -> list[str]:
    """One line per device under a header, columns aligned; pure, so tests need no broker."""
    rows = [_row(v) for v in sorted(views, key=lambda v: v.device_id)]
    if not rows:
        return ["no massagers seen yet"]
    table = [HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


class _Lines:
    """Not a terminal: one line per change (timestamp, device, what changed)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last: dict[tuple[str, str], str] = {}

    def changed(self, change: Change) -> None:
        if self._last.get(change[:2]) == change.summary:
            return  # repeated telemetry with nothing new
        self._last[change[:2]] = change.summary
        stamp = time.strftime("%H:%M:%S")
        self.out.write(f"{stamp} {change.device_id} {change.kind} {change.summary}\n")
        self.out.flush()

    def status(self, text: str) -> None:
        pass  # connection news already goes to stderr


class _LiveTable:
    """A terminal: redraw the whole table (clear + home), at most every REDRAW_S."""

    def __init__(
        self, out: TextIO, views: dict[str, DeviceView], title: str, *, summary: bool = False
    ) -> None:
        self.out, self.views, self.title = out, views, title
        self.summary = summary  # always the fleet summary (else: when the table does not fit)
        self._status = "connecting"
        self._dirty = asyncio.Event()
        self._dirty.set()
        self.messages = 0  # messages folded in since the last redraw: the rate shown
        self._counted_at = time.monotonic()

    def changed(self, change: Change) -> None:
        self.messages += 1
        self._dirty.set()

    def status(self, text: str) -> None:
        self._status = text
        self._dirty.set()

    def draw(self) -> None:
        size = shutil.get_terminal_size()
        now = time.monotonic()
        rate = self.messages / max(now - self._counted_at, 1e-3)
        self.messages, self._counted_at = 0, now
        body = render_table(self.views.values())
        if self.summary or len(body) > size.lines - 2:  # 1,000 devices do not fit: summarise
            from firmware_bridge.cli.monitor_summary import render_summary

            body = render_summary(self.views.values(), rows=max(4, size.lines - 2), rate=rate)
        width = size.columns
        lines = [*body, "", f"{self.title} | {self._status}"]
        self.out.write(CLEAR + "\n".join(line[:width] for line in lines) + "\n")
        self.out.flush()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.draw()
            await asyncio.sleep(REDRAW_S)


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def _unreachable(settings: BrokerSettings, exc: BaseException) -> None:
    _error(f"cannot reach the MQTT broker at {settings.display}: {exc}")


def _client(settings: BrokerSettings, role: str) -> Any:
    """A fresh client (they are not re-entrant); a TLS file that won't load is an MqttError."""
    try:
        return make_client(
            settings,
            identifier=f"massager-{role}-{secrets.token_hex(4)}",
            max_queued_incoming=MAX_QUEUED,
        )
    except OSError as exc:  # ssl.SSLError: unreadable CA/cert/key
        raise MqttError(str(exc)) from exc


async def _until_quiet(
    messages: AsyncIterator[_T], *, max_s: float, quiet_s: float
) -> AsyncIterator[_T]:
    """Messages until none arrived for `quiet_s` or `max_s` passed (retained ones come first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(min(quiet_s, left)):
                message = await anext(messages)
        except TimeoutError:
            return
        yield message


def _subscriptions(prefix: str, device_id: str | None) -> list[str]:
    if device_id is None:
        Topics("_", prefix)  # validates the prefix
        return list(all_devices(prefix).values())
    topics = Topics(device_id, prefix)
    return [topics.availability, topics.state, topics.telemetry, topics.events]


async def _once(
    settings: BrokerSettings,
    subscriptions: list[str],
    prefix: str,
    out: TextIO,
    *,
    summary: bool = False,
) -> None:
    views: dict[str, DeviceView] = {}
    async with _client(settings, "monitor") as client:
        for topic in subscriptions:
            await client.subscribe(topic, qos=1)
        quiet = _until_quiet(client.messages, max_s=ONCE_MAX_S, quiet_s=ONCE_QUIET_S)
        async for message in quiet:
            apply_message(views, message.topic.value, message.payload, prefix)
    if summary:
        from firmware_bridge.cli.monitor_summary import render_summary

        lines = render_summary(views.values(), rows=len(views) + 6)  # all of it: not a screen
    else:
        lines = render_table(views.values())
    out.write("\n".join(lines) + "\n")


async def _watch(
    settings: BrokerSettings,
    subscriptions: list[str],
    prefix: str,
    views: dict[str, DeviceView],
    sink: _Lines | _LiveTable,
) -> None:
    """Follow the topics; aiomqtt does not reconnect, so loop around `async with client`."""
    delay, connected = BACKOFF_FIRST_S, False
    while True:
        try:
            async with _client(settings, "monitor") as client:
                for topic in subscriptions:
                    await client.subscribe(topic, qos=1)
                connected, delay = True, BACKOFF_FIRST_S
                sink.status(f"connected to {settings.display}")
                async for message in client.messages:  # read promptly: the queue is bounded
                    change = apply_message(views, message.topic.value, message.payload, prefix)
                    if change is not None:
                        sink.changed(change)
        except MqttError as exc:
            if not connected:
                raise  # a broker that was never there is a usage problem, not a blip
            note = f"lost {settings.display} ({exc}); reconnecting in {delay:g} s"
            print(f"massager: {note}", file=sys.stderr)
            sink.status(note)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)


async def _monitor(args: argparse.Namespace, settings: BrokerSettings, out: TextIO) -> int:
    subscriptions = _subscriptions(args.prefix, args.device_id)
    try:
        async with asyncio.timeout(args.duration):
            if args.once:
                await _once(settings, subscriptions, args.prefix, out, summary=args.summary)
                return EXIT_OK
            views: dict[str, DeviceView] = {}
            if not out.isatty():
                await _watch(settings, subscriptions, args.prefix, views, _Lines(out))
                return EXIT_OK  # pragma: no cover - _watch only returns by raising
            table = _LiveTable(
                out,
                views,
                f"massager monitor {settings.display} (Ctrl-C quits)",
                summary=args.summary,
            )
            async with asyncio.TaskGroup() as tasks:
                redraw = tasks.create_task(table.run(), name="monitor-redraw")
                try:
                    await _watch(settings, subscriptions, args.prefix, views, table)
                finally:
                    redraw.cancel()
    except TimeoutError:  # --duration elapsed
        return EXIT_OK
    except MqttError as exc:
        _unreachable(settings, exc)
        return EXIT_FAULT
    return EXIT_OK


def _settings(args: argparse.Namespace) -> BrokerSettings | None:
    """Broker settings and topic names checked up front: any problem is one line, exit 2."""
    try:
        settings = settings_from_args(args, args.mqtt or DEFAULT_MQTT)
        _subscriptions(args.prefix, args.device_id)
    except ValueError as exc:  # BrokerURLError, or a bad device id / prefix
        _error(str(exc))
        return None
    return settings


def monitor_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return EXIT_BAD_INPUT
    try:
        return asyncio.run(_monitor(args, settings, sys.stdout))
    except KeyboardInterrupt:  # Ctrl-C is how a live monitor ends
        return EXIT_OK


def add_monitor_commands(commands: Any) -> None:
    from firmware_bridge.cli.helptext import BAD_INPUT, epilog

    monitor = commands.add_parser(
        "monitor",
        help="watch massagers over MQTT",
        description="Show every massager's state and telemetry live (a table on a terminal, "
        "one line per change otherwise). Ctrl-C quits.",
        epilog=epilog(
            [
                "massager monitor",
                "massager monitor --mqtt mqtt://broker.lan:1883 --device-id living-room",
                "massager monitor --once --summary",
                "massager monitor --duration 60 > monitor.log",
            ],
            [
                ("0", "done: --once printed, --duration elapsed, or Ctrl-C"),
                (
                    "1",
                    "the broker could not be reached at the start (a lost connection is retried)",
                ),
                BAD_INPUT,
            ],
        ),
    )
    add_broker_arguments(monitor, url_help=f"broker (default {DEFAULT_MQTT})")
    monitor.add_argument("--device-id", help="only this device")
    monitor.add_argument("--once", action="store_true", help="print the current table and exit")
    monitor.add_argument(
        "--summary",
        action="store_true",
        help="a fleet summary: counts, stop reasons and the devices that need attention "
        "(on a terminal it is shown by itself when the table does not fit)",
    )
    monitor.add_argument("--duration", type=float, metavar="S", help="exit after S seconds")
    monitor.set_defaults(handler=monitor_command)
