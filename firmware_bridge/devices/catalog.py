"""The device descriptions: shipped ones (package data) and the person's own (config dir)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from platformdirs import user_config_dir

from firmware_bridge.protocol.description import Description, DescriptionError, parse_description
from profiles.files import InputFileError, parse_toml, read_text_file

_LOGGER = logging.getLogger(__name__)

LIBRARY_PACKAGE = "firmware_bridge.devices.library"
MAX_DESCRIPTION_BYTES = 64 * 1024  # a description is half a page of TOML; bigger is a mistake
MAX_USER_DESCRIPTIONS = 200  # files read from the user directory; more is a wrong directory
ENV_CONFIG = "MASSAGER_CONFIG"  # the config file; user descriptions sit in devices/ beside it


def user_devices_dir() -> Path:
    """`devices/` beside config.toml (`$MASSAGER_CONFIG`'s directory when that is set)."""
    override = os.environ.get(ENV_CONFIG)
    base = (
        Path(override).expanduser().parent
        if override
        else Path(user_config_dir("firmware-bridge", appauthor=False))
    )
    return base / "devices"


def load_text(text: str, source: str) -> Description:
    try:
        data = parse_toml(text)
    except ValueError as exc:
        raise DescriptionError(source, [str(exc)]) from exc
    if "id" not in data and source.endswith(".toml"):
        data["id"] = Path(source).stem  # the file name is the id unless the file says otherwise
    return parse_description(data, source)


def load_description_file(path: str | Path) -> Description:
    """Load one description file; every failure is a DescriptionError, one line per problem."""
    path = Path(path)
    source = path.name if path.name.isprintable() else repr(path.name)
    try:
        text = read_text_file(path, max_bytes=MAX_DESCRIPTION_BYTES, what="a device description")
    except InputFileError as exc:
        raise DescriptionError(source, [exc.problem]) from exc
    return load_text(text, source)


@cache
def shipped() -> tuple[Description, ...]:
    """The descriptions that come with firmware-bridge (protocol v1 first)."""
    files = sorted(
        (entry for entry in resources.files(LIBRARY_PACKAGE).iterdir()),
        key=lambda entry: entry.name,
    )
    files = [entry for entry in files if entry.name.endswith(".toml")]
    found = [load_text(entry.read_text(encoding="utf-8"), entry.name) for entry in files]
    return tuple(sorted(found, key=lambda d: (d.driver != "protocol-v1", d.id)))


def user_descriptions(directory: Path | None = None) -> tuple[list[Description], list[str]]:
    """The person's descriptions, and one line for each file that would not load."""
    directory = directory or user_devices_dir()
    if not directory.is_dir():
        return [], []
    loaded: list[Description] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.toml"))[:MAX_USER_DESCRIPTIONS]:
        try:
            loaded.append(load_description_file(path))
        except DescriptionError as exc:
            problems.extend(str(exc).splitlines())
    return loaded, problems


def catalog(directory: Path | None = None) -> list[Description]:
    """User descriptions first (they may refine a shipped one by reusing its id), then shipped."""
    users, problems = user_descriptions(directory)
    for line in problems:
        _LOGGER.warning("device description skipped: %s", line)
    ids = {d.id for d in users}
    return users + [d for d in shipped() if d.id not in ids]


def by_id(description_id: str, directory: Path | None = None) -> Description:
    for description in catalog(directory):
        if description.id == description_id:
            return description
    known = ", ".join(d.id for d in catalog(directory))
    raise DescriptionError(description_id, [f"no device description of that id (known: {known})"])


def match(
    name: str | None,
    service_uuids: Sequence[str],
    manufacturer_data: Mapping[int, bytes],
    *,
    directory: Path | None = None,
) -> Description | None:
    """The first description whose match rules fit this advertisement, or None."""
    for description in catalog(directory):
        if description.fits(name, service_uuids, manufacturer_data):
            return description
    return None
