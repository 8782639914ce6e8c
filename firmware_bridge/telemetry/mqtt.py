"""The one module that talks to aiomqtt (2.x): broker settings and client construction.

Keeping aiomqtt behind this module keeps the move to aiomqtt 3 local. Credentials come from
the URL, the environment (MASSAGER_MQTT_USERNAME / MASSAGER_MQTT_PASSWORD) or a config file,
and are never printed or logged: `BrokerSettings.display` and `repr` redact them.
"""

from __future__ import annotations

import os
import socket
import ssl
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from aiomqtt import MqttError, ProtocolVersion, Will

__all__ = ["BrokerSettings", "MqttError", "Will", "make_client"]

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_S = 15  # the broker publishes our Last Will within 1.5 × this after we vanish
TIMEOUT_S = 5.0  # connect, subscribe and QoS 1 publish are bounded
ENV_USERNAME = "MASSAGER_MQTT_USERNAME"
ENV_PASSWORD = "MASSAGER_MQTT_PASSWORD"  # noqa: S105 - the variable's name, not a password


class BrokerURLError(ValueError):
    """The broker URL or its credentials/TLS files are unusable; the message says why."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in. Secrets never appear in `display` or `repr`."""

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        env: dict[str, str] | None = None,
    ) -> BrokerSettings:
        """Parse `mqtt://[user[:pass]@]host[:port]` or `mqtts://...`; flags, then env, fill in."""
        env = dict(os.environ) if env is None else env
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in DEFAULT_PORT:
            raise BrokerURLError(f"--mqtt {_redact(url)}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise BrokerURLError(f"--mqtt {_redact(url)}: no host")
        try:
            port = parts.port or DEFAULT_PORT[parts.scheme]
        except ValueError as exc:
            raise BrokerURLError(f"--mqtt {_redact(url)}: bad port") from exc
        for path, what in ((ca_file, "CA file"), (cert_file, "certificate"), (key_file, "key")):
            if path is not None and not Path(path).is_file():
                raise BrokerURLError(f"{what} {path}: no such file")
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts" or ca_file is not None,
            username=username
            or (unquote(parts.username) if parts.username else None)
            or env.get(ENV_USERNAME),
            password=password
            or (unquote(parts.password) if parts.password else None)
            or env.get(ENV_PASSWORD),
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> BrokerSettings:
        """`[mqtt]` table of a TOML file: url, username, password, ca_file, cert_file, key_file."""
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("mqtt", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BrokerURLError(f"{path}: cannot read MQTT settings: {exc}") from exc
        if "url" not in table:
            raise BrokerURLError(f'{path}: [mqtt] needs url = "mqtt://host:port"')
        keys = ("username", "password", "ca_file", "cert_file", "key_file")
        options = {k: table[k] for k in keys if k in table} | {
            k: v for k, v in overrides.items() if v is not None
        }
        return cls.from_url(str(table["url"]), **options)

    @property
    def display(self) -> str:
        """For messages: scheme, user name and host, never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def with_port(self, port: int) -> BrokerSettings:
        return replace(self, port=port)

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _redact(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def make_client(
    settings: BrokerSettings,
    *,
    identifier: str,
    will: Will | None = None,
    clean_session: bool = True,
    max_queued_incoming: int = 1000,
) -> aiomqtt.Client:
    """An aiomqtt client with Nagle off (command latency), bounded incoming queue, MQTT 3.1.1.

    MQTT 3.1.1 because the embedded broker (amqtt) speaks only that; with `clean_session=False`
    QoS 1 messages for us survive a reconnect.
    """
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        protocol=ProtocolVersion.V311,
        will=will,
        clean_session=clean_session,
        keepalive=KEEPALIVE_S,
        timeout=TIMEOUT_S,
        tls_context=settings.tls_context(),
        max_queued_incoming_messages=max_queued_incoming,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
