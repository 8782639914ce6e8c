"""Loading profiles from TOML, with one clear line per problem naming the file and field."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
            out += f".{part}" if out else str(part)
    return out or "(profile)"


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        message = error["msg"]
        if error["type"] == "union_tag_invalid":
            message = (
                f"unknown segment kind {error['input'].get('kind')!r}"
                if isinstance(error["input"], dict)
                else message
            )
        elif error["type"] == "union_tag_not_found":
            message = "missing `kind` (steady, ramp, pulse, wave, burst, alternate, rest, repeat)"
        elif error["type"] in _RANGE_ERRORS and error["loc"][-1] in _LEVEL_FIELDS:
            message = f"must be between 0 and 1 (got {error['input']!r})"
        elif error["type"] in _RANGE_ERRORS:
            bound = next(iter(error.get("ctx", {}).values()), "?")
            message = f"must be {_RANGE_ERRORS[error['type']]} {bound} (got {error['input']!r})"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"{_location(tuple(error['loc']))}: {message[0].lower()}{message[1:]}")
    return lines


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    """Validate already-parsed TOML data."""
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(source, _problems(exc)) from exc


def load_text(text: str, source: str) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(source, [f"not valid TOML: {exc}"]) from exc
    return parse_profile(data, source)


def load_file(path: str | Path) -> Profile:
    """Load a profile file; every failure is a ProfileError with a one-line reason."""
    path = Path(path)
    source = path.name
    try:
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            raise ProfileError(
                source, [f"file is {size:,} bytes; a profile is at most {MAX_PROFILE_BYTES:,}"]
            )
        if not path.is_file():
            raise ProfileError(source, ["not a regular file"])
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(source, [f"cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(source, [f"not UTF-8 text (byte {exc.start})"]) from exc
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
