"""Running a session with MQTT telemetry against a real broker, and listening to it (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_bridge.device import DeviceLimits
from firmware_bridge.journal import Journal
from firmware_bridge.record import SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, make_client
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import Publisher
from firmware_bridge.telemetry.topics import Topics
from profiles.model import Profile
from tests.rigs import Rig

__all__ = ["Listener", "listening", "profile", "published_session", "send"]


def profile(seconds: float = 40) -> Profile:
    return Profile.model_validate(
        {
            "name": "test",
            "title": "Test",
            "segments": [
                {"kind": "ramp", "duration_s": seconds, "start": 0.2, "end": 1.0},
                {"kind": "ramp", "duration_s": 30, "start": 0.3, "end": 0, "cool_down": True},
            ],
        }
    )


@dataclass
class Listener:
    """A separate MQTT client recording everything under one device's topics."""

    settings: BrokerSettings
    topics: Topics
    messages: list[tuple[str, Any, bool]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, reconnect: bool = False) -> None:
        while True:
            try:
                name = f"test-listener-{time.monotonic_ns()}"  # one id per client, or they evict
                async with make_client(self.settings, identifier=name) as client:
                    for kind in ("availability", "state", "telemetry", "events"):
                        # Not cmd/#: a flood of commands there would fill this client's queue.
                        await client.subscribe(f"{self.topics.base}/{kind}", qos=1)
                    self.ready.set()
                    async for message in client.messages:
                        payload = bytes(message.payload)
                        try:
                            value: Any = json.loads(payload)
                        except ValueError:
                            value = payload.decode(errors="replace")
                        self.messages.append((str(message.topic), value, bool(message.retain)))
            except MqttError:
                if not reconnect:
                    raise
                await asyncio.sleep(0.05)

    def on(self, kind: str) -> list[Any]:
        return [v for t, v, _ in self.messages if t == f"{self.topics.base}/{kind}"]

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.on("events") if type_ is None or e.get("type") == type_]


@contextlib.asynccontextmanager
async def listening(
    settings: BrokerSettings, topics: Topics, **kw: bool
) -> AsyncIterator[Listener]:
    listener = Listener(settings, topics)
    task = asyncio.create_task(listener.run(**kw))
    await asyncio.wait_for(listener.ready.wait(), 5)
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MqttError):
            await task


async def send(
    settings: BrokerSettings, topic: str, payload: bytes | str, *, retain: bool = False
) -> None:
    async with make_client(settings, identifier=f"test-sender-{time.monotonic_ns()}") as client:
        await client.publish(topic, payload, qos=1, retain=retain)


@contextlib.asynccontextmanager
async def published_session(
    rig: Rig,
    settings: BrokerSettings,
    topics: Topics,
    tmp_path: Path,
    *,
    cap: int = 6,
    seconds: float = 40,
    remote_control: bool = False,
    outbox: Path | None = None,
    limits: DeviceLimits | None = None,
) -> AsyncIterator[tuple[Session, SessionTelemetry, asyncio.Task[SessionRecord], Publisher]]:
    """A session on `rig` publishing to `settings`; the profile ramps up over `seconds`."""
    publisher = Publisher(
        settings,
        topics,
        outbox=Outbox(outbox or tmp_path / "outbox"),
        remote_control=remote_control,
    )
    pub_task = asyncio.create_task(publisher.run())
    async with rig.link(limits=limits) as link:
        telemetry = SessionTelemetry(
            profile="test",
            cap=cap,
            publisher=publisher,
            journal=Journal("test", directory=tmp_path, header={}),
        )
        session = Session(
            link,
            profile(seconds),
            SafetySettings(cap=cap),
            on_sample=telemetry.sample,
            on_event=telemetry.event,
        )
        telemetry.attach(session)
        running = asyncio.create_task(session.run())
        try:
            yield session, telemetry, running, publisher
            record = await asyncio.wait_for(asyncio.shield(running), 30)
            telemetry.finish(record)
        finally:
            if not running.done():
                running.cancel()
            await publisher.close()
            await asyncio.wait_for(pub_task, 5)
