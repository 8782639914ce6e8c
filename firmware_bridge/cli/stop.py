"""`massager stop`: stop massagers over MQTT and say, per device, whether it confirmed zero.

The stop goes to `<prefix>/<id>/cmd/stop` (QoS 1, never retained) with a request id; each
controller acts on it at once and answers with a `stop_result` event carrying that id and
whether the device acknowledged zero. Exit 0 only when every targeted device confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from firmware_bridge.cli.mqtt_options import add_broker_arguments, settings_from_args
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, make_client
from firmware_bridge.telemetry.topics import Topics, split, valid_device_id

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
DISCOVER_MAX_S = 1.0  # retained availability follows the SUBACK at once; never wait longer
DISCOVER_QUIET_S = 0.25  # ... and stop as soon as the broker has been quiet this long
MAX_EVENT_CHARS = 4096  # larger messages on an events topic are skipped unparsed
DEFAULT_WAIT_S = 5.0  # a controller answers within its device's ack timeout (1 s) + the broker


@dataclass
class Outcome:
    """What became of the stop for one device."""

    device_id: str
    availability: str | None  # None: nothing on this broker ever announced the id
    answer: dict[str, Any] | None = None

    @property
    def confirmed(self) -> bool:
        return bool(self.answer and self.answer.get("stop_confirmed") is True)

    def line(self, wait_s: float) -> str:
        answer, name = self.answer, self.device_id
        if answer is not None and self.confirmed:
            latency = answer.get("latency_ms")
            took = f" in {latency:g} ms" if isinstance(latency, int | float) else ""
            return f"{name}: stopped; the device confirmed zero{took}"
        if answer is not None:
            why = answer.get("problem") or "the device did not acknowledge zero"
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


def _text(payload: object) -> str:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload).decode("utf-8", "replace")
    return str(payload or "")


async def _availability(client: Any, prefix: str, device_id: str | None) -> dict[str, str]:
    """The retained availability of one device, or of every device under `prefix`."""
    topic = Topics(device_id, prefix).availability if device_id else f"{prefix}/+/availability"
    await client.subscribe(topic, qos=1)
    seen: dict[str, str] = {}
    async for message in _until_quiet(client, max_s=DISCOVER_MAX_S, quiet_s=DISCOVER_QUIET_S):
        parts = split(str(message.topic), prefix)
        if parts is not None and parts[1] == "availability" and valid_device_id(parts[0]):
            seen[parts[0]] = _text(message.payload)
    await client.unsubscribe(topic)
    return seen


async def _answers(
    client: Any, prefix: str, request_id: str, outcomes: dict[str, Outcome], wait_s: float
) -> None:
    """Collect `stop_result` events for `request_id` until every outcome has one, or timeout."""
    waiting = {o.device_id for o in outcomes.values() if o.availability == "online"}
    if not waiting:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                parts = split(str(message.topic), prefix)
                if parts is None or parts[1] != "events" or parts[0] not in outcomes:
                    continue
                raw = _text(message.payload)
                if len(raw) > MAX_EVENT_CHARS:
                    continue  # a stop_result is a few hundred bytes; anything else is not ours
                try:
                    event = json.loads(raw)
                except (ValueError, RecursionError):  # anyone may publish on an events topic
                    continue
                if (
                    isinstance(event, dict)
                    and event.get("type") == "stop_result"
                    and event.get("request_id") == request_id
                ):
                    outcomes[parts[0]].answer = event
                    waiting.discard(parts[0])
                    if not waiting:
                        return


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
        seen = await _availability(client, prefix, device_id)
        if device_id is not None:
            targets = [device_id]
        else:
            targets = sorted(d for d, state in seen.items() if state == "online")
            if not every and len(targets) != 1:
                which = f"{len(targets)} online ({', '.join(targets)})" if targets else "none"
                return f"which massager? {which}: use --device-id ID or --all"
        outcomes = {d: Outcome(d, seen.get(d)) for d in targets}
        for target in targets:  # listen before speaking: the answer can come back at once
            await client.subscribe(Topics(target, prefix).events, qos=1)
        body = json.dumps({"request_id": request_id, "ts": round(time.time(), 3)})
        for target in targets:  # an explicit target gets the stop even if it looks offline
            await client.publish(Topics(target, prefix).command("stop"), body, qos=1)
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
    stop = commands.add_parser(
        "stop",
        help="stop a massager over MQTT and report what it confirmed",
        description="Send a stop to a massager (the only online one unless told which) and "
        "wait for each device to confirm zero. Exit 0 only when every one confirmed; 1 when "
        "one did not, is offline or unknown; 2 for bad input.",
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
