"""Defaults for the `massager` commands from config.toml and MASSAGER_* environment variables.

config.toml is one flat TOML table in the user config directory (`massager config path`; the
variable MASSAGER_CONFIG names another file). A missing file is fine. Every key is optional
and is the default of the flag with the same name (`max_minutes` is `--max-minutes`):

    person = "ana"                    # whose history commands use (default: the OS user;
                                      # `run --sim` needs --person itself to leave the demo)
    cap = 3                           # run: an integer 0-10 (built-in default 4)
    max_minutes = 20                  # run: 0.1-30 (built-in default 15)
    telemetry_hz = 2                  # run: 1-50
    address = "AA:BB:CC:DD:EE:FF"     # run: this device (or name = "...", not both)
    device_id = "living-room"         # run: its id in MQTT topics
    mqtt = "mqtt://broker.lan:1883"   # run, monitor, stop, doctor (run also: embedded, off)
    topic_prefix = "massager"         # run, monitor, stop, doctor
    mqtt_username = "ana"             # and mqtt_password, mqtt_ca, mqtt_cert, mqtt_key
    esphome_key = "..."               # run, scan: the ESPHome proxies' noise key (--esphome)

Each key can also be set with MASSAGER_<KEY> (MASSAGER_CAP=3). A flag beats the variable, the
variable beats the file, the file beats the built-in default. Values are checked against the
flags' own ranges, so neither a file nor a variable can widen a safety limit.
"""

from __future__ import annotations

import argparse
import getpass
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from platformdirs import user_config_dir

from profiles.files import InputFileError, read_text_file

ENV_CONFIG = "MASSAGER_CONFIG"
ENV_PREFIX = "MASSAGER_"
MAX_CONFIG_BYTES = 64 * 1024  # a dozen short keys; anything bigger is not our config file
MAX_TEXT_CHARS = 256  # names, addresses, ids, URLs and paths are all far shorter
MAX_SECRET_CHARS = 65535  # MQTT strings are length-prefixed with two bytes
KEEP_BUILTIN = frozenset({"off", "embedded"})  # `--mqtt` words for run (doctor reports them)
HIDDEN = "***"  # what is printed for a password that is set
FALLBACK_DEST = "broker_fallback"  # credentials from the file, below URL and environment


class ConfigError(ValueError):
    """A config file or MASSAGER_* value is unusable: one line naming the file or variable."""


Check = Callable[[object, bool], object]  # (raw value, from a variable's text) -> value


def _kind(raw: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    return names.get(type(raw), type(raw).__name__)


class BadValueError(ValueError):
    """A config value is unusable, whatever the reason (its type included): the message says why."""


def _number(low: float, high: float, *, integer: bool) -> Check:
    what = f"{'an integer' if integer else 'a number'} {low:g}-{high:g}"

    def check(raw: object, text: bool) -> object:
        value: object = raw
        if text and isinstance(raw, str):
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                raise BadValueError(f"must be {what} (got {raw})") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = repr(raw) if isinstance(raw, str) else _kind(raw)
            raise BadValueError(f"must be {what} (got {shown})")
        if integer and not isinstance(value, int):
            raise BadValueError(f"must be {what} (got {value})")
        if not low <= value <= high:  # NaN fails this too
            raise BadValueError(f"must be {what} (got {value})")
        return value if integer else float(value)

    return check


def _text(valid: Callable[[str], object] | None = None, *, secret: bool = False) -> Check:
    limit = MAX_SECRET_CHARS if secret else MAX_TEXT_CHARS

    def check(raw: object, text: bool) -> object:
        if not isinstance(raw, str):
            raise BadValueError(f'must be a "string" (got {_kind(raw)})')
        if not raw or len(raw) > limit or not (secret or raw.isprintable()):
            raise BadValueError(f"must be 1-{limit} printable characters")
        if valid is not None:
            valid(raw)
        return raw

    return check


def _device_id(value: str) -> None:
    from firmware_bridge.telemetry.topics import valid_device_id

    if not valid_device_id(value):
        raise ValueError(f"{value!r}: use 1-64 letters, digits, '-' or '_'")


def _broker(value: str) -> None:
    if value.strip().lower() in KEEP_BUILTIN:
        return
    from firmware_bridge.telemetry.mqtt import BrokerSettings

    try:
        BrokerSettings.from_url(value, env={})
    except ValueError as exc:  # BrokerURLError: its text already hides any password
        raise ValueError(str(exc).removeprefix("--mqtt ")) from exc


def _prefix(value: str) -> None:
    from firmware_bridge.telemetry.topics import Topics

    Topics("_", value)  # ValueError naming the prefix and why


@dataclass(frozen=True)
class Key:
    """One config key: its check, the commands it gives a default to, and their flag's dest."""

    name: str
    check: Check
    commands: frozenset[str] | None  # None: every command that has the flag
    dest: str = ""  # the flag's argparse dest; "" when it is the key's name
    secret: bool = False
    path: bool = False  # a file: `~` expanded, relative to the config file's directory
    url: bool = False  # may hold a password after the user name

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def target(self) -> str:
        return self.dest or self.name


_RUN = frozenset({"run"})
_BROKER = frozenset({"run", "monitor", "stop", "doctor"})

KEYS = (
    Key("person", _text(), None),  # --person, wherever a command has it
    Key("cap", _number(0, 10, integer=True), _RUN | {"calibrate"}),  # a ramp up to the cap
    Key("max_minutes", _number(0.1, 30, integer=False), _RUN),
    Key("telemetry_hz", _number(1, 50, integer=False), _RUN),
    Key("address", _text(), _RUN),
    Key("name", _text(), _RUN),
    Key("device_id", _text(_device_id), _RUN),
    Key("mqtt", _text(_broker), _BROKER, url=True),
    Key("topic_prefix", _text(_prefix), _BROKER, dest="prefix"),
    # Credentials go below the URL's and the MASSAGER_MQTT_* variables, as they always did.
    Key("mqtt_username", _text(secret=True), _BROKER, dest=FALLBACK_DEST),
    Key("mqtt_password", _text(secret=True), _BROKER, dest=FALLBACK_DEST, secret=True),
    Key("mqtt_ca", _text(), _BROKER, path=True),
    Key("mqtt_cert", _text(), _BROKER, path=True),
    Key("mqtt_key", _text(), _BROKER, path=True),
    # ESPHome proxies' noise key (`--esphome`): a secret, so config or variable, never a flag
    Key("esphome_key", _text(secret=True), frozenset({"run", "scan"}), secret=True),
)
BY_NAME = {key.name: key for key in KEYS}


def shown(key: Key, value: object) -> object:
    """`value` as it may be printed: a password is ***, in a URL too."""
    if value is None:
        return None
    if key.secret:
        return HIDDEN
    text = str(value)
    scheme = text.find("://")
    start = scheme + 3 if scheme >= 0 else 0
    at = text.rfind("@")  # a password may hold '@': the host starts after the last one
    user, colon, _ = text[start:at].partition(":") if key.url and at > start else ("", "", "")
    return f"{text[:start]}{user}:{HIDDEN}{text[at:]}" if colon else value


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """$MASSAGER_CONFIG, else config.toml in the platform's user config directory."""
    override = (os.environ if environ is None else environ).get(ENV_CONFIG)
    if override:
        return Path(override).expanduser()
    return Path(user_config_dir("firmware-bridge", appauthor=False)) / "config.toml"


def os_user() -> str:
    """The default person: the OS user's login name."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "me"


@dataclass(frozen=True)
class Config:
    """Checked values from the file and from MASSAGER_* variables, kept apart for `show`."""

    path: Path
    found: bool
    file: dict[str, object] = field(default_factory=dict)
    env: dict[str, object] = field(default_factory=dict)

    def lookup(self, key: Key) -> tuple[object, str, str] | None:
        """(value, source, origin) from the variable, else the file; None for neither."""
        if key.name in self.env:
            return self.env[key.name], "env", key.env
        if key.name in self.file:
            return self.file[key.name], "file", str(self.path)
        return None


def checked(key: Key, raw: object, *, text: bool, base: Path) -> object:
    """`raw` checked for `key` (from a variable's text or a TOML value); raises ValueError."""
    value = key.check(raw, text)
    if key.path:
        path = Path(str(value)).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ValueError(f"no such file {path}")
        value = str(path)
    return value


def _read(path: Path) -> tuple[bool, dict[str, Any]]:
    try:
        text = read_text_file(path, max_bytes=MAX_CONFIG_BYTES, what="a config file")
    except InputFileError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return False, {}  # no file: the built-in defaults
        raise ConfigError(str(exc)) from exc
    try:
        return True, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per nesting level
        raise ConfigError(f"{path}: nested too deeply") from exc.with_traceback(None)
    except ValueError as exc:  # int()'s 4300-digit limit comes through unwrapped
        raise ConfigError(f"{path}: not valid TOML: a number too long to read") from exc


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The config file and MASSAGER_* variables, checked. Raises ConfigError (one line)."""
    environ = os.environ if environ is None else environ
    path = config_path(environ)
    found, data = _read(path)
    file: dict[str, object] = {}
    for name, raw in data.items():
        key = BY_NAME.get(name)
        shown = name if name.isprintable() else repr(name)
        if key is None:
            known = ", ".join(BY_NAME)
            raise ConfigError(f"{path}: {shown}: unknown key (known: {known})")
        try:
            file[name] = checked(key, raw, text=False, base=path.parent)
        except ValueError as exc:
            flat = (
                "; the file is one flat table of key = value lines"
                if _kind(raw) == "a table"
                else ""
            )
            raise ConfigError(f"{path}: {name}: {exc}{flat}") from exc
    env: dict[str, object] = {}
    for key in KEYS:
        raw_text = environ.get(key.env)
        if not raw_text:  # unset or empty: not set
            continue
        try:
            env[key.name] = checked(key, raw_text, text=True, base=Path.cwd())
        except ValueError as exc:
            raise ConfigError(f"{key.env}: {exc}") from exc
    for layer, where in ((file, str(path)), (env, "")):
        if "address" in layer and "name" in layer:
            both = where or f"{BY_NAME['address'].env}, {BY_NAME['name'].env}"
            raise ConfigError(f"{both}: address and name: set one of them, not both")
    if "address" in env or "name" in env:  # the device is chosen by one layer, whole
        file.pop("address", None)
        file.pop("name", None)
    return Config(path, found, file, env)


def readable_secret(config: Config) -> bool:
    """Whether the file holds an MQTT password (a key or in the URL) others may read."""
    url = str(config.file.get("mqtt", ""))
    try:
        in_url = bool(urlsplit(url).password)
    except ValueError:  # checked when loaded; a race at worst
        in_url = False
    if "mqtt_password" not in config.file and not in_url:
        return False
    try:
        return bool(os.stat(config.path).st_mode & 0o077)
    except OSError:  # it was just read: a race at worst, no harm
        return False


@dataclass(frozen=True)
class Configured:
    """A default that came from the config file or a variable, until `resolve` unwraps it."""

    value: object
    origin: str  # the file or the variable
    builtin: object  # what the flag's default was: restored when the value must not apply


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{command name: its parser} of the program's parser."""
    for action in parser._actions:  # argparse offers no public walk
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def applies(key: Key, command: str, parser: argparse.ArgumentParser) -> bool:
    """Whether `key` gives `command` (whose parser is `parser`) a default."""
    if key.commands is None:
        return any(action.dest == key.target for action in parser._actions)
    return command in key.commands


def configured_commands(parsers: Mapping[str, argparse.ArgumentParser]) -> set[str]:
    """The commands some key gives a default to: a bad config must stop them."""
    return {name for name, parser in parsers.items() if any(applies(k, name, parser) for k in KEYS)}


def apply(parsers: Mapping[str, argparse.ArgumentParser], config: Config) -> None:
    """Make config values the defaults of the commands' flags, so a given flag still wins."""
    for command, parser in parsers.items():
        defaults: dict[str, Configured] = {}
        fallback: dict[str, str] = {}
        for key in KEYS:
            found = config.lookup(key)
            if found is None or not applies(key, command, parser):
                continue
            value, source, origin = found
            if key.target == FALLBACK_DEST:
                if source == "file":  # the variables are read where the broker is set up
                    fallback[key.env] = str(value)
                continue
            defaults[key.target] = Configured(value, origin, parser.get_default(key.target))
        if fallback:
            defaults[FALLBACK_DEST] = Configured(fallback, str(config.path), None)
        parser.set_defaults(**defaults)


def resolve(args: argparse.Namespace) -> dict[str, str]:
    """Unwrap config defaults after parsing; returns {dest: file or variable} of those used.

    A configured device gives way to `--sim` or an explicitly chosen one, and an explicit
    `--mqtt-config` file describes its broker whole.
    """
    configured = {k: v for k, v in vars(args).items() if isinstance(v, Configured)}
    command = getattr(args, "command", None)
    dropped: set[str] = set()
    if command == "run":
        chosen = {"address", "name"} & {k for k, v in vars(args).items() if v is not None}
        if getattr(args, "sim", False) or chosen - configured.keys():
            dropped |= {"address", "name"}
        if getattr(args, "sim", False):  # a demo stays the simulated person's: only an
            dropped.add("person")  # explicit --person plays a person's course on the simulator
    if getattr(args, "mqtt_config", None):
        dropped |= {"mqtt", "mqtt_ca", "mqtt_cert", "mqtt_key", FALLBACK_DEST}
    mqtt = configured.get("mqtt")
    if (
        command in {"monitor", "stop"}
        and mqtt is not None
        and str(mqtt.value).strip().lower() in KEEP_BUILTIN
    ):
        dropped.add("mqtt")
    used: dict[str, str] = {}
    for dest, value in configured.items():
        if dest in dropped:
            setattr(args, dest, value.builtin)
        else:
            setattr(args, dest, value.value)
            used[dest] = value.origin
    return used


__all__ = [
    "ENV_CONFIG",
    "KEYS",
    "Config",
    "ConfigError",
    "Configured",
    "Key",
    "applies",
    "apply",
    "checked",
    "command_parsers",
    "config_path",
    "configured_commands",
    "load",
    "os_user",
    "readable_secret",
    "resolve",
    "shown",
]
