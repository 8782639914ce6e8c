"""`massager config show | path`: the settings commands start from, and where each came from."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from firmware_bridge.cli.helptext import BAD_INPUT, epilog, group_help
from firmware_bridge.cli.settings import (
    FALLBACK_DEST,
    KEYS,
    Config,
    ConfigError,
    Key,
    checked,
    config_path,
    load,
    os_user,
    shown,
)

EXIT_OK, EXIT_BAD_INPUT = 0, 2
MAX_VALUE_WIDTH = 40  # `config show` aligns sources after values up to this long

KEYS_HELP = """\
config.toml is one flat TOML table. Every key is optional and sets the default
of the flag with the same name:
  person         --person: whose history commands use (default: the OS user)
  cap            run --cap: an integer 0-10 (default {cap})
  max_minutes    run --max-minutes: 0.1-30 (default {minutes:g})
  telemetry_hz   run --telemetry-hz: 1-50
  address, name  run --address / --name: the device (set one; --sim ignores it)
  device_id      run --device-id: the device's id in MQTT topics
  mqtt           --mqtt of run, monitor, stop and doctor: mqtt://host:port or
                 mqtts://host (embedded and off: run and doctor only)
  topic_prefix   --topic-prefix of the same commands
  mqtt_username, mqtt_password
                 broker login; a URL's own login and MASSAGER_MQTT_USERNAME /
                 MASSAGER_MQTT_PASSWORD come first
  mqtt_ca, mqtt_cert, mqtt_key
                 TLS files (PEM); a relative path starts at the file's directory
  esphome_key    scan and run --esphome: the proxies' API encryption key
The broker keys do not apply when --mqtt-config names a broker file.

Each key can also be set with MASSAGER_<KEY>: MASSAGER_CAP=3, MASSAGER_MQTT=...
A flag beats the variable, the variable beats the file, the file beats the
built-in default. MASSAGER_CONFIG=FILE reads another file. A value outside the
flag's range is refused (exit 2): no setting can widen a safety limit.

A config.toml:
  cap = 3
  max_minutes = 20
  address = "AA:BB:CC:DD:EE:FF"
  mqtt = "mqtts://broker.lan"
  mqtt_username = "ana\""""


def _keys_help() -> str:
    from firmware_bridge.safety import DEFAULT_CAP, DEFAULT_SESSION_S

    return KEYS_HELP.format(cap=DEFAULT_CAP, minutes=DEFAULT_SESSION_S / 60)


def add_config_command(commands: Any) -> None:
    config = commands.add_parser(
        "config",
        help="show the settings from config.toml and MASSAGER_* variables",
        description="Where the commands' defaults come from: config.toml, MASSAGER_* "
        "variables, or the built-in ones.",
        epilog=epilog(
            [
                "massager config show",
                "MASSAGER_CAP=3 massager config show --json",
                '"$EDITOR" "$(massager config path)"',
            ],
            [("0", "done (config with no subcommand prints this help)"), BAD_INPUT],
            notes=_keys_help(),
        ),
    )
    config.set_defaults(handler=group_help(config))
    sub = config.add_subparsers(dest="config_command", title="subcommands")
    show = sub.add_parser(
        "show",
        help="the effective settings and where each came from",
        description="Print every setting's value and its source: flag, env (a MASSAGER_* "
        "variable), file (config.toml) or default. Passwords show as ***.",
        epilog=epilog(
            [
                "massager config show",
                "massager config show --json",
                "MASSAGER_CAP=2 massager config show --cap 3   # the flag wins: 3",
            ],
            [
                ("0", "shown"),
                (
                    "2",
                    "a bad value or unknown key in config.toml or a MASSAGER_* variable, "
                    "or a bad flag: one line naming the file or variable and the key",
                ),
            ],
        ),
    )
    show.add_argument("--json", action="store_true", help="one JSON object")
    preview = show.add_argument_group(
        "flags to preview", "give a command's flags to see what it would use with them"
    )
    for key in KEYS:
        preview.add_argument(
            key.flag,
            dest=f"flag_{key.name}",
            default=argparse.SUPPRESS,
            type=_flag_type(key),
            metavar=key.name.upper(),
        )
    show.set_defaults(handler=config_show)
    path = sub.add_parser(
        "path",
        help="where config.toml is read from",
        description="Print the config file's path (MASSAGER_CONFIG, else config.toml in the "
        "user config directory), whether or not it exists.",
        epilog=epilog(
            ["massager config path", '"$EDITOR" "$(massager config path)"'], [("0", "printed")]
        ),
    )
    path.set_defaults(handler=config_path_command)


def _flag_type(key: Key) -> Any:
    def parse(text: str) -> object:
        try:
            return checked(key, text, text=True, base=Path.cwd())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None  # argparse names the flag

    return parse


def _builtin_defaults() -> dict[str, object]:
    """The defaults `run` has with no config: read from its parser, so they cannot drift."""
    from firmware_bridge.cli.run import add_run_command

    commands = argparse.ArgumentParser().add_subparsers()
    add_run_command(commands)
    run = commands.choices["run"]
    found: dict[str, object] = {"person": os_user()}
    for key in KEYS:
        if key.commands is not None and "run" in key.commands and key.target != FALLBACK_DEST:
            found[key.name] = run.get_default(key.target)
    return found


def effective(args: argparse.Namespace, config: Config) -> list[dict[str, Any]]:
    """One row per key: name, value, source (flag | env | file | default) and origin."""
    builtin = _builtin_defaults()
    rows = []
    for key in KEYS:
        flag = getattr(args, f"flag_{key.name}", None)
        found = config.lookup(key)
        if flag is not None:
            value, source, origin = flag, "flag", key.flag
        elif found is not None:
            value, source, origin = found
        else:
            value, source, origin = builtin.get(key.name), "default", None
        rows.append({"key": key.name, "value": shown(key, value), "source": source, "from": origin})
    return rows


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_show(args: argparse.Namespace) -> int:
    try:
        config = load()
    except ConfigError as exc:
        print(f"massager: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = effective(args, config)
    if args.json:
        settings = {row.pop("key"): row for row in rows}
        shown = {"config_file": str(config.path), "found": config.found, "settings": settings}
        print(json.dumps(shown))
        return EXIT_OK
    state = "" if config.found else " (not found: built-in defaults)"
    print(f"{'config file':14}{config.path}{state}")
    width = min(max(len(_shown(row["value"])) for row in rows), MAX_VALUE_WIDTH)
    for row in rows:
        source = f"{row['source']} {row['from']}" if row["source"] in {"flag", "env"} else ""
        print(f"{row['key']:14}{_shown(row['value']):{width}} {source or row['source']}")
    return EXIT_OK


def config_path_command(args: argparse.Namespace) -> int:
    print(config_path())
    return EXIT_OK


__all__ = ["add_config_command", "config_path_command", "config_show", "effective"]
