"""`massager stop`: stop massagers over MQTT and say, per device, whether it confirmed zero.

The stop goes to `<prefix>/<id>/cmd/stop` (QoS 1, never retained) with a request id; each
controller acts on it at once and answers with a `stop_result` event carrying that id and
whether the device acknowledged zero. Exit 0 only when every targeted device confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.cli.mqtt_options import add_broker_arguments, settings_from_args
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, make_client
from firmware_bridge.telemetry.topics import Topics, split, valid_device_id

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
DISCOVER_MAX_S = 1.0  # retained availability follows the SUBACK at once; never wait longer
DISCOVER_QUIET_S = 0.25  # ... and stop as soon as the broker has been quiet this long
MAX_MESSAGE_BYTES = 16 * 1024  # ours are a few hundred bytes; bigger ones are skipped unread
SECOND_ANSWER_S = 0.3  # after every device answered, wait this long for a second controller
DEFAULT_WAIT_S = 5.0  # a controller answers within its device's ack timeout (1 s) + the broker


@dataclass
class Outcome:
    """What became of the stop for one device."""

    device_id: str
    availability: str | None  # None: nothing on this broker ever announced the id
    answers: list[dict[str, Any]] = field(default_factory=list)  # one per controller

    @property
    def confirmed(self) -> bool:
        """Every controller that answered says its device acknowledged zero."""
        return bool(self.answers) and all(a.get("stop_confirmed") is True for a in self.answers)

    def line(self, wait_s: float) -> str:
        name = self.device_id
        if self.confirmed:
            latency = self.answers[0].get("latency_ms")
            took = f" in {latency:g} ms" if isinstance(latency, int | float) else ""
            many = f" ({len(self.answers)} controllers)" if len(self.answers) > 1 else ""
            return f"{name}: stopped; the device confirmed zero{took}{many}"
        if self.answers:
            bad = next(a for a in self.answers if a.get("stop_confirmed") is not True)
            why = bad.get("problem") or "the device did not acknowledge zero"
            return f"{name}: stop sent but NOT confirmed ({why}); its watchdog is the backstop"
        if self.availability is None:
            return f"{name}: unknown on this broker (no controller has announced it)"
        if self.availability != "online":
            return f"{name}: offline (its controller is not connected); nothing confirmed"
        return f"{name}: no confirmation within {wait_s:g} s"


async def _until_quiet(client: Any, *, max_s: float, quiet_s: float) -> AsyncIterator[Any]:
    """Messages until none arrived for `quiet_s` or `max_s` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    messages = aiter(client.messages)
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(min(quiet_s, left)):
                message = await anext(messages)
        except TimeoutError:
            return
        yield message


def _text(payload: object, limit: int = MAX_MESSAGE_BYTES) -> str | None:
    """A payload as text, or None when it is too big to be one of ours (never decoded)."""
    raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
    if len(raw) > limit:
        return None
    return bytes(raw).decode("utf-8", "replace")


async def _retained(
    client: Any, prefix: str, device_id: str | None
) -> tuple[dict[str, str], set[str]]:
    """Retained availability per device, and the devices whose state says a session runs.

    A controller whose main connection dropped is `offline` here while its stop lane may still
    obey, so a running state counts as a target for `--all` too.
    """
    device = device_id or "+"
    topics = [f"{prefix}/{device}/availability", f"{prefix}/{device}/state"]
    for topic in topics:
        await client.subscribe(topic, qos=1)
    availability: dict[str, str] = {}
    running: set[str] = set()
    async for message in _until_quiet(client, max_s=DISCOVER_MAX_S, quiet_s=DISCOVER_QUIET_S):
        parts = split(str(message.topic), prefix)
        text = _text(message.payload)
        if parts is None or text is None or not valid_device_id(parts[0]):
            continue
        if parts[1] == "availability":
            availability[parts[0]] = text
        elif parts[1] == "state":
            try:
                state = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(state, dict) and state.get("state") in {"running", "paused"}:
                running.add(parts[0])
    for topic in topics:
        await client.unsubscribe(topic)
    return availability, running


def _answer(message: Any, prefix: str, request_id: str) -> tuple[str, dict[str, Any]] | None:
    """(device id, stop_result) if `message` answers our request, else None."""
    parts = split(str(message.topic), prefix)
    text = _text(message.payload)
    if parts is None or parts[1] != "events" or text is None:
        return None
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # anyone may publish on an events topic
        return None
    if (
        isinstance(event, dict)
        and event.get("type") == "stop_result"
        and event.get("request_id") == request_id
    ):
        return parts[0], event
    return None


async def _answers(
    client: Any, prefix: str, request_id: str, outcomes: dict[str, Outcome], wait_s: float
) -> None:
    """Collect every `stop_result` for `request_id` until each device answered (plus a short
    grace for a second controller on the same id), or `wait_s` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    answered_at: dict[str, float] = {}
    messages = aiter(client.messages)
    while (now := loop.time()) < deadline:
        if len(answered_at) == len(outcomes):
            deadline = min(deadline, max(answered_at.values()) + SECOND_ANSWER_S)
        try:
            async with asyncio.timeout(max(0.0, deadline - now)):
                message = await anext(messages)
        except TimeoutError:
            return
        found = _answer(message, prefix, request_id)
        if found is not None and found[0] in outcomes:
            outcomes[found[0]].answers.append(found[1])
            answered_at.setdefault(found[0], loop.time())


async def stop_devices(
    settings: BrokerSettings,
    prefix: str,
    *,
    device_id: str | None,
    every: bool,
    wait_s: float = DEFAULT_WAIT_S,
) -> list[Outcome] | str:
    """Send a stop to the chosen devices and gather their answers (or why none is chosen)."""
    request_id = secrets.token_hex(8)
    identifier = f"massager-stop-{secrets.token_hex(4)}"
    async with make_client(settings, identifier=identifier) as client:
        availability, running = await _retained(client, prefix, device_id)
        if device_id is not None:
            targets = [device_id]
        else:
            online = {d for d, state in availability.items() if state == "online"}
            targets = sorted(online | running)
            if not every and len(targets) != 1:
                which = f"{len(targets)} online ({', '.join(targets)})" if targets else "none"
                return f"which massager? {which}: use --device-id ID or --all"
        outcomes = {d: Outcome(d, availability.get(d)) for d in targets}
        for target in targets:  # listen before speaking: the answer can come back at once
            await client.subscribe(Topics(target, prefix).events, qos=1)
        body = json.dumps({"request_id": request_id, "ts": round(time.time(), 3)})
        for target in targets:  # every target gets the stop, whatever its availability says
            await client.publish(Topics(target, prefix).command("stop"), body, qos=1)
        if targets:
            await _answers(client, prefix, request_id, outcomes, wait_s)
    return list(outcomes.values())


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def stop_command(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args, args.mqtt or DEFAULT_MQTT)
        if args.device_id is not None:
            Topics(args.device_id, args.prefix)
    except ValueError as exc:  # BrokerURLError, or a bad device id / prefix
        _error(str(exc))
        return EXIT_BAD_INPUT
    try:
        result = asyncio.run(
            stop_devices(
                settings,
                args.prefix,
                device_id=args.device_id,
                every=args.all,
                wait_s=args.timeout,
            )
        )
    except (MqttError, OSError) as exc:
        _error(f"cannot reach the MQTT broker at {settings.display}: {exc}")
        return EXIT_FAULT
    if isinstance(result, str):
        _error(result)
        return EXIT_BAD_INPUT
    if not result:
        print("no massager is online; nothing to stop", file=sys.stderr)
        return EXIT_OK
    for outcome in result:
        print(outcome.line(args.timeout), flush=True)
    return EXIT_OK if all(outcome.confirmed for outcome in result) else EXIT_FAULT


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout must be a number, got {text!r}") from None
    if not 0.1 <= value <= 60:
        raise argparse.ArgumentTypeError(f"--timeout must be 0.1-60 seconds, got {text}")
    return value


def add_stop_command(commands: Any) -> None:
    from firmware_bridge.cli.helptext import INTERRUPTED, epilog

    stop = commands.add_parser(
        "stop",
        help="stop a massager over MQTT and report what it confirmed",
        description="Send a stop to a massager (the only online one unless told which) and "
        "wait for each device to confirm zero; one line per device says what became of it.",
        epilog=epilog(
            [
                "massager stop",
                "massager stop --device-id living-room",
                "massager stop --all --mqtt mqtts://broker.lan --mqtt-ca ca.pem",
                "massager stop --all --timeout 10",
            ],
            [
                ("0", "every targeted device confirmed zero (or none is online: nothing to stop)"),
                (
                    "1",
                    "a device did not confirm, is offline or unknown on the broker, or "
                    "the broker could not be reached",
                ),
                (
                    "2",
                    "bad input, or several are online and neither --device-id nor --all was given",
                ),
                INTERRUPTED,
            ],
        ),
    )
    add_broker_arguments(stop, url_help=f"broker (default {DEFAULT_MQTT})")
    which = stop.add_mutually_exclusive_group()
    which.add_argument("--device-id", help="stop this device")
    which.add_argument("--all", action="store_true", help="stop every online device")
    stop.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"how long to wait for confirmations (default {DEFAULT_WAIT_S:g} s)",
    )
    stop.set_defaults(handler=stop_command)
