"""Safety: the governor that every intensity passes through."""

from firmware_bridge.safety.governor import (
    DEFAULT_CAP,
    DEFAULT_SESSION_S,
    HARD_CEILING_S,
    RISE_FLOOR,
    STEP_FACTOR,
    Decision,
    DiscomfortBands,
    SafetyGovernor,
    SafetySettings,
    to_levels,
)

__all__ = [
    "DEFAULT_CAP",
    "DEFAULT_SESSION_S",
    "HARD_CEILING_S",
    "RISE_FLOOR",
    "STEP_FACTOR",
    "Decision",
    "DiscomfortBands",
    "SafetyGovernor",
    "SafetySettings",
    "to_levels",
]
