"""Fuzz target: MQTT command payloads (`command_value`, `rating`, `stop_request_id`)."""

from __future__ import annotations

from firmware_bridge.telemetry.commands import command_value, rating, stop_request_id

MAX_LEN = 512  # bytes per input: payloads over 64 (256 for a stop) are refused unread
SESSION_STARTED_TS = 1_700_000_000.0  # s since the epoch; a JSON `ts` below it is refused
MAX_RATING = 10  # a rating is 0-10 (NRS)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    """These run in the MQTT client's socket reader, so they never raise, for any payload."""
    value = command_value(data, session_started_ts=SESSION_STARTED_TS)
    score = rating(value)
    if score is not None and (type(score) is not int or not 0 <= score <= MAX_RATING):
        raise AssertionError(f"rating {score!r} from {data!r}")
    request_id = stop_request_id(data)
    if request_id is not None and type(request_id) is not str:
        raise AssertionError(f"stop request id {request_id!r} from {data!r}")
