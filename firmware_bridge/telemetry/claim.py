"""One device id, one live controller: the claim check made before going online.

A controller that is online has a retained `availability` of `online` and a retained `state`
naming its session. Before a controller publishes `online` it reads both; if another session
is online under the same id it refuses rather than evict it (two controllers on one id make a
stop look delivered while the other session runs on). A controller that died without a clean
disconnect stays `online` until the broker publishes its Last Will, 1.5 keep-alives later.

Then the ACL probe: having published `online` (retained) and subscribed to its own
availability, a controller waits for that `online` to come back. If it does not, the broker
refuses this controller's publish or subscription on its own topics: MQTT 3.1.1 brokers do
that silently (mosquitto acknowledges a denied PUBLISH and grants a denied SUBSCRIBE), and
aiomqtt 2 would not report a refusal code anyway. Without the probe, such a controller would
run a session that nobody can see, and whose stop nobody may be able to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import ValidationError

from firmware_bridge.errors import DeviceIdForbiddenError, DeviceIdInUseError
from firmware_bridge.telemetry.mqtt import KEEPALIVE_S
from firmware_bridge.telemetry.payloads import StatePayload
from firmware_bridge.telemetry.topics import Topics

CLAIM_MAX_S = 1.0  # retained messages follow the SUBACK at once; never wait longer than this
CLAIM_QUIET_S = 0.25  # ... and stop as soon as the broker has been quiet this long
MAX_RETAINED_BYTES = 16 * 1024  # a state payload is a few hundred bytes
FINISHED = frozenset({"stopped", "fault", "link_lost"})  # states no output follows
# Our retained "online" comes back right after the SUBACK (milliseconds on loopback, a round
# trip on a slow link); 1.5 s keeps the claim check (at most CLAIM_MAX_S) plus the probe within
# the time the CLI waits before a session, so a refusal is reported before anything runs.
PROBE_S = 1.5

_LOGGER = logging.getLogger(__name__)


async def check_claim(client: Any, topics: Topics, session_id: str) -> None:
    """Raise DeviceIdInUseError if another session is online under `topics.device_id`."""
    await client.subscribe(topics.availability, qos=1)
    await client.subscribe(topics.state, qos=1)
    availability: str | None = None
    state: StatePayload | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLAIM_MAX_S
    with contextlib.suppress(TimeoutError):
        while (left := deadline - loop.time()) > 0:
            async with asyncio.timeout(min(CLAIM_QUIET_S, left)):
                message = await anext(aiter(client.messages))
            payload = message.payload
            if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_RETAINED_BYTES:
                continue  # ours are a few hundred bytes; a huge one is not a controller's
            text = bytes(payload).decode("utf-8", "replace")
            if str(message.topic) == topics.availability:
                availability = text
            elif str(message.topic) == topics.state:
                with contextlib.suppress(ValidationError):
                    state = StatePayload.model_validate_json(text) if text else None
    await client.unsubscribe(topics.availability)
    await client.unsubscribe(topics.state)
    if availability != "online":
        return
    other = state.session_id if state is not None else None
    if other == session_id:
        return  # our own claim, from before a reconnect
    if state is not None and state.state in FINISHED:
        # A session that ended is not running output; its controller may have been killed
        # during its last seconds and left "online" behind. Take the id over, and say so.
        _LOGGER.warning(
            "MQTT: device id %r was left online by a finished session (%s); taking it over",
            topics.device_id,
            state.state,
        )
        return
    since = f" (session {other})" if other else ""
    raise DeviceIdInUseError(
        f"device id {topics.device_id!r} is already online on this broker{since}; stop that "
        f"controller or choose another --device-id (a controller that died is released "
        f"{round(KEEPALIVE_S * 1.5)} s later)",
        device_id=topics.device_id,
    )


async def probe_own_topics(
    client: Any,
    topics: Topics,
    state: str,
    session_id: str,
    *,
    broker: str,
    username: str | None,
) -> float:
    """Publish `state` (retained JSON carrying `session_id`) and read it back from the broker.

    The session id makes the echo ours: a stale retained state (or `online`) of a controller
    before us must not pass for it. Call with `topics.availability` subscribed: a late Last
    Will saying `offline` there is answered with `online` again. Returns how long the echo took
    (seconds); raises DeviceIdForbiddenError, naming `broker` and `username`, if it did not
    come within PROBE_S.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.publish(topics.state, state, qos=1, retain=True)
    await client.subscribe(topics.state, qos=1)
    messages = aiter(client.messages)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROBE_S):
                while True:
                    message = await anext(messages)
                    payload = message.payload
                    if not isinstance(payload, bytes | bytearray):
                        continue
                    if str(message.topic) == topics.availability and payload == b"offline":
                        # A late Last Will of a controller before us replaced ours.
                        await client.publish(topics.availability, b"online", qos=1, retain=True)
                    elif (
                        str(message.topic) == topics.state
                        and _session_of(bytes(payload)) == session_id
                    ):
                        return loop.time() - started
    finally:
        with contextlib.suppress(Exception):  # the probe's answer matters, not this
            await client.unsubscribe(topics.state)
    who = f"user {username!r}" if username else "anonymous clients"
    raise DeviceIdForbiddenError(
        f"MQTT broker {broker} does not let {who} publish and read back {topics.state} (its "
        f"own state did not come back within {PROBE_S:g} s); check the broker's ACL for "
        f"device id {topics.device_id!r} (and that it keeps retained messages), or use a "
        "--device-id it allows",
        device_id=topics.device_id,
        username=username,
    )


def _session_of(payload: bytes) -> str | None:
    if len(payload) > MAX_RETAINED_BYTES:
        return None
    with contextlib.suppress(ValidationError):
        return StatePayload.model_validate_json(payload).session_id
    return None
