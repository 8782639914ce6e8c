"""Fuzz target: the `[mqtt]` settings loader (`BrokerSettings.from_config_text`)."""

from __future__ import annotations

from firmware_bridge.telemetry.mqtt import MAX_SECRET, BrokerSettings, BrokerURLError

MAX_LEN = 4096  # bytes per input: an [mqtt] table is a few lines; the rest is for nesting
SOURCE = "fuzz.toml"


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    """Loading raises BrokerURLError and nothing else; what loads has a host and a port."""
    try:  # invalid UTF-8 is refused by the file reader; replaced, it still drives TOML
        text = data.decode("utf-8", "replace")
        settings = BrokerSettings.from_config_text(text, SOURCE, env={})  # not this shell's
    except BrokerURLError:
        return
    if not settings.host or not 0 < settings.port <= 0xFFFF:
        raise AssertionError(f"loaded host {settings.host!r} port {settings.port}")
    for secret in (settings.username, settings.password):
        if secret is not None and len(secret) > MAX_SECRET:
            raise AssertionError(f"loaded a {len(secret)}-character credential")
