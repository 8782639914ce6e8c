"""The MQTT flags every command that talks to a broker shares (run, monitor, stop, doctor).

One definition, so `massager stop` reaches exactly the brokers `massager run` can: a URL, a
TOML config file, credentials from flags or the environment, and TLS with a private CA.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from firmware_bridge.telemetry.mqtt import BrokerSettings
from firmware_bridge.telemetry.topics import DEFAULT_PREFIX, Topics


def add_broker_arguments(parser: argparse.ArgumentParser, *, url_help: str) -> None:
    """`--mqtt URL`, `--mqtt-config FILE`, credentials, TLS files and the topic prefix."""
    group = parser.add_argument_group(
        "MQTT broker",
        "Defaults can come from config.toml or MASSAGER_* variables (massager config --help).",
    )
    group.add_argument("--mqtt", metavar="URL", help=url_help)
    group.add_argument(
        "--mqtt-config", metavar="FILE", help="TOML file with an [mqtt] table (url, username, ...)"
    )
    group.add_argument("--mqtt-username", metavar="NAME", help="or MASSAGER_MQTT_USERNAME")
    group.add_argument(
        "--mqtt-password", metavar="SECRET", help="prefer MASSAGER_MQTT_PASSWORD (not in ps)"
    )
    group.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate for mqtts:// (PEM)")
    group.add_argument("--mqtt-cert", metavar="FILE", help="client certificate (PEM)")
    group.add_argument("--mqtt-key", metavar="FILE", help="client key (PEM)")
    group.add_argument(
        "--topic-prefix",
        "--prefix",
        dest="prefix",
        default=DEFAULT_PREFIX,
        help=f"topic prefix (default {DEFAULT_PREFIX})",
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "username": args.mqtt_username,
        "password": args.mqtt_password,
        "ca_file": args.mqtt_ca,
        "cert_file": args.mqtt_cert,
        "key_file": args.mqtt_key,
    }


def settings_from_args(args: argparse.Namespace, url: str) -> BrokerSettings:
    """The broker from `--mqtt-config` (flags override it) or from `url`.

    Raises BrokerURLError (a ValueError) with one line naming the flag or file and field.
    """
    check_prefix(args.prefix)
    if args.mqtt_config:
        return BrokerSettings.from_config(args.mqtt_config, **_options(args))
    # Credentials from config.toml rank below the URL's and the MASSAGER_MQTT_* variables.
    fallback: dict[str, str] = getattr(args, "broker_fallback", None) or {}
    return BrokerSettings.from_url(url, **_options(args), env=fallback | dict(os.environ))


def check_prefix(prefix: str) -> None:
    """Raise ValueError (one line) unless `prefix` can head our topics."""
    Topics("_", prefix)
