"""Loading profiles from TOML, with one clear line per problem naming the file and field."""

from __future__ import annotations

import math
from datetime import date, time
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from profiles.files import NESTED_TOO_DEEPLY, InputFileError, parse_toml, read_text_file
from profiles.model import Profile

MAX_PROFILE_BYTES = 256 * 1024  # a profile is a page of TOML; anything bigger is a mistake
LIBRARY_PACKAGE = "profiles.library"
_LEVEL_FIELDS = {"level", "start", "end", "low", "high", "base"}
_RANGE_ERRORS = {
    "less_than_equal": "at most",
    "less_than": "less than",
    "greater_than_equal": "at least",
    "greater_than": "greater than",
}
_TYPE_ERRORS = {
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "finite_number": "must be a finite number",
}
SHOWN_MAX_CHARS = 40  # characters of a string input quoted back; the line names the field anyway


class ProfileError(ValueError):
    """A profile could not be loaded; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


def _location(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as `segments[3].level` (dropping union tags)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"steady", "ramp", "pulse", "wave", "burst", "alternate", "rest", "repeat"}:
            continue  # the discriminator's branch name, not a field
        else:
            name = str(part) if str(part).isprintable() else repr(str(part))  # one line, always
            out += f".{name}" if out else name
    return out or "(profile)"


def _shown(value: Any) -> str:
    """An input value as the TOML that spelled it, short and on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf: TOML's own spelling
    if isinstance(value, str):  # repr escapes newlines and other line breaks: one line stays one
        return repr(value if len(value) <= SHOWN_MAX_CHARS else value[:SHOWN_MAX_CHARS] + "...")
    if isinstance(value, list):
        return "an array"  # never repr a container: it may be nested hundreds deep
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, date | time):  # TOML dates and times; datetime is a date
        return value.isoformat()
    return repr(value)


def _number(bound: object) -> str:
    return f"{bound:g}" if isinstance(bound, int | float) else str(bound)


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        message = error["msg"]
        if error["type"] == "union_tag_invalid":
            message = (
                f"unknown segment kind {_shown(error['input'].get('kind'))}"
                if isinstance(error["input"], dict)
                else message
            )
        elif error["type"] == "union_tag_not_found":
            message = "missing `kind` (steady, ramp, pulse, wave, burst, alternate, rest, repeat)"
        elif error["type"] in _TYPE_ERRORS:
            message = f"{_TYPE_ERRORS[error['type']]} (got {_shown(error['input'])})"
        elif error["type"] in _RANGE_ERRORS and error["loc"][-1] in _LEVEL_FIELDS:
            message = f"must be between 0 and 1 (got {_shown(error['input'])})"
        elif error["type"] in _RANGE_ERRORS:
            bound = next(iter(error.get("ctx", {}).values()), "?")
            unit = " s" if str(error["loc"][-1]).endswith("_s") else ""
            message = (
                f"must be {_RANGE_ERRORS[error['type']]} {_number(bound)}{unit} "
                f"(got {_shown(error['input'])})"
            )
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"{_location(tuple(error['loc']))}: {message[0].lower()}{message[1:]}")
    return lines


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    """Validate already-parsed TOML data."""
    try:
        try:
            return Profile.model_validate(data)
        except ValidationError as exc:
            raise ProfileError(source, _problems(exc)) from exc
    except RecursionError as exc:  # deep Python input: validating or describing it recursed
        raise ProfileError(source, [NESTED_TOO_DEEPLY]) from exc.with_traceback(None)


def load_text(text: str, source: str) -> Profile:
    """Parse and validate a profile's TOML text."""
    try:
        data = parse_toml(text)
    except ValueError as exc:
        raise ProfileError(source, [str(exc)]) from exc
    return parse_profile(data, source)


def load_file(path: str | Path) -> Profile:
    """Load a profile file; every failure is a ProfileError with a one-line reason."""
    path = Path(path)
    source = path.name if path.name.isprintable() else repr(path.name)
    try:
        text = read_text_file(path, max_bytes=MAX_PROFILE_BYTES, what="a profile")
    except InputFileError as exc:
        raise ProfileError(source, [exc.problem]) from exc
    return load_text(text, source)


def library_names() -> list[str]:
    """Names of the built-in profiles."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files(LIBRARY_PACKAGE).iterdir()
        if entry.name.endswith(".toml")
    )


def load_builtin(name: str) -> Profile:
    """A built-in profile by name."""
    if name not in library_names():
        known = ", ".join(library_names())
        raise ProfileError(name, [f"no built-in profile of that name (known: {known})"])
    entry = resources.files(LIBRARY_PACKAGE).joinpath(f"{name}.toml")
    return load_text(entry.read_text(encoding="utf-8"), f"{name}.toml")


def resolve(name_or_path: str) -> Profile:
    """A built-in name, or a path to a TOML file."""
    if name_or_path in library_names():
        return load_builtin(name_or_path)
    if name_or_path.endswith(".toml") or "/" in name_or_path or Path(name_or_path).exists():
        return load_file(name_or_path)
    return load_builtin(name_or_path)
