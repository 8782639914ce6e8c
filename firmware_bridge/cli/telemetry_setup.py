"""Wiring a session's telemetry: broker choice (off, embedded, URL), publisher, journal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from firmware_bridge.cli.mqtt_options import add_broker_arguments, check_prefix, settings_from_args
from firmware_bridge.journal import Journal, data_dir
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.broker import EmbeddedBroker, broker_listening, choose_broker
from firmware_bridge.telemetry.homeassistant import discovery_payload
from firmware_bridge.telemetry.mqtt import BrokerSettings
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import Publisher
from firmware_bridge.telemetry.topics import Topics, valid_device_id

PUBLISHER_CLOSE_S = 5.0  # the publisher's own close is bounded at 3 s (flush 2 s, offline 1 s)
CLAIM_WAIT_S = 15.0  # before the session: connect, the claim check (≤ 1 s) and the ACL probe
# (≤ 1.5 s), several round trips each on a slow broker; a broker that is not there ends it at once
DEFAULT_EMBEDDED_PORT = 1883

_LOGGER = logging.getLogger(__name__)


def add_telemetry_arguments(run: Any) -> None:
    add_broker_arguments(
        run,
        url_help="mqtt://host:port, mqtts://..., embedded or off; default with --sim: the "
        "broker on localhost:1883 if one listens, else an embedded one; without --sim: off",
    )
    group = run.add_argument_group("telemetry and journal")
    group.add_argument(
        "--telemetry-hz", type=float, default=2.0, help="telemetry rate, 1-50 (default 2)"
    )
    group.add_argument(
        "--remote-control",
        action="store_true",
        help="also accept MQTT commands that could raise output (off by default)",
    )
    group.add_argument(
        "--ha-discovery", action="store_true", help="publish Home Assistant discovery"
    )
    group.add_argument("--no-journal", action="store_true", help="do not write the journal")


def broker_settings(args: argparse.Namespace) -> tuple[str, BrokerSettings | None]:
    """('off' | 'embedded' | 'url', settings). Raises BrokerURLError for a bad URL or file,
    ValueError for a bad topic prefix: both before any device is touched."""
    check_prefix(args.prefix)
    if args.mqtt_config and (args.mqtt or "").strip().lower() != "off":  # off means off
        return "url", settings_from_args(args, "")
    choice = choose_broker(args.mqtt, sim=args.sim)
    if choice.kind != "url" or choice.settings is None:
        return choice.kind, None
    if args.mqtt is None:  # auto-detected local broker
        return "url", choice.settings
    return "url", settings_from_args(args, args.mqtt)


def device_id_for(args: argparse.Namespace, address: str) -> str:
    if args.device_id:
        return str(args.device_id)
    candidate = "".join(c for c in address.lower() if c.isalnum())[:32] or "massager"
    return candidate if valid_device_id(candidate) else "massager"


async def shared_broker(
    stack: AsyncExitStack, kind: str, settings: BrokerSettings | None
) -> tuple[str, BrokerSettings | None]:
    """Start the embedded broker (kept until `stack` closes) when asked for; else as given.
    Several devices of one run share it: ("url", its settings) afterwards."""
    if kind != "embedded":
        return kind, settings
    port = 0 if broker_listening(port=DEFAULT_EMBEDDED_PORT) else DEFAULT_EMBEDDED_PORT
    broker = await stack.enter_async_context(EmbeddedBroker(port=port))
    print(
        f"Embedded MQTT broker: massager monitor --mqtt {broker.settings.display}", file=sys.stderr
    )
    return "url", broker.settings


@asynccontextmanager
async def session_telemetry(
    args: argparse.Namespace,
    kind: str,
    settings: BrokerSettings | None,
    *,
    profile: str,
    device_id: str,
    device: dict[str, Any],
    header: dict[str, Any] | None = None,
) -> AsyncIterator[SessionTelemetry]:
    """Publisher (if any broker) and journal for one session; closes both cleanly."""
    session_id = secrets.token_hex(6)  # the same in the journal, the store and over MQTT
    async with AsyncExitStack() as stack:
        publisher = None
        kind, settings = await shared_broker(stack, kind, settings)
        if settings is not None:
            topics = Topics(device_id, prefix=args.prefix)
            discovery = None
            if args.ha_discovery:
                discovery = discovery_payload(
                    topics,
                    name=str(device["name"]),
                    model="BLE foot massager",
                    firmware=device.get("firmware"),
                )
            publisher = Publisher(
                settings,
                topics,
                outbox=Outbox(data_dir() / "outbox" / device_id),  # memory only if unwritable
                telemetry_hz=args.telemetry_hz,
                remote_control=args.remote_control,
                discovery=discovery,
                session_id=session_id,
            )
            task = asyncio.create_task(publisher.run(), name="mqtt publisher")
            stack.push_async_callback(_stop_publisher, publisher, task)
            # One live controller per device id: refuse before the session, never evict (a
            # broker that does not answer in time is checked again when it comes back).
            await publisher.wait_claimed(CLAIM_WAIT_S)
        journal = None
        if not args.no_journal:
            # The header names the session and the person so that a session killed mid-way is
            # put back into the person's history from this file (firmware_bridge.store).
            journal = Journal(
                profile,
                header={"device_id": device_id, "device": device, "session_id": session_id}
                | (header or {}),
            )
        yield SessionTelemetry(
            profile=profile,
            cap=args.cap,
            publisher=publisher,
            journal=journal,
            session_id=session_id,
        )


async def _stop_publisher(publisher: Publisher, task: asyncio.Task[None]) -> None:
    """Close telemetry after the session; never raises (the summary must still print)."""
    await publisher.close()
    try:
        async with asyncio.timeout(PUBLISHER_CLOSE_S):
            await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    except Exception:  # telemetry is never on the safety path (S10): log, never raise
        _LOGGER.exception("MQTT publisher failed")
