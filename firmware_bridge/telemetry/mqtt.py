"""The one module that talks to aiomqtt (2.x): broker settings and client construction.

Keeping aiomqtt behind this module keeps the move to aiomqtt 3 local. Credentials come from
the URL, the environment (MASSAGER_MQTT_USERNAME / MASSAGER_MQTT_PASSWORD) or a config file,
and are never printed or logged: `BrokerSettings.display` and `repr` redact them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from aiomqtt import MqttError, ProtocolVersion, Will

from profiles.files import InputFileError, read_text_file

_LOGGER = logging.getLogger(__name__)

__all__ = ["BrokerSettings", "MqttError", "Will", "make_client"]

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_S = 15  # the broker publishes our Last Will within 1.5 × this after we vanish
TIMEOUT_S = 5.0  # connect, subscribe and QoS 1 publish are bounded
ENV_USERNAME = "MASSAGER_MQTT_USERNAME"
ENV_PASSWORD = "MASSAGER_MQTT_PASSWORD"  # noqa: S105 - the variable's name, not a password
MAX_CONFIG_BYTES = 64 * 1024  # an [mqtt] table is a few lines; anything bigger is a mistake
MAX_URL_CHARS = 2048
MAX_HOST_CHARS = 253  # DNS: a name is at most 253 characters, a label at most 63
MAX_SECRET = 65535  # MQTT strings are length-prefixed with two bytes
_CONFIG_KEYS = ("username", "password", "ca_file", "cert_file", "key_file")
_HOST_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # any case: urlsplit lower-cases it


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
        shown = _redact(url)
        if len(url) > MAX_URL_CHARS or not url.isprintable():
            raise BrokerURLError(f"--mqtt {shown[:60]!r}: not a broker URL")
        try:
            parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        except ValueError as exc:  # "Invalid IPv6 URL"
            raise BrokerURLError(f"--mqtt {shown}: not a valid URL ({exc})") from exc
        try:
            port = parts.port  # parsed lazily: a bad port raises here
        except ValueError as exc:
            # Not the parser's words: they quote the "port", which is part of a password when
            # that holds '/', '?' or '#' (they end the host part early).
            raise BrokerURLError(f"--mqtt {shown}: bad port (not a number 1-65535)") from exc
        if parts.scheme not in DEFAULT_PORT:
            raise BrokerURLError(f"--mqtt {shown}: scheme must be mqtt:// or mqtts://")
        if port == 0:
            raise BrokerURLError(f"--mqtt {shown}: bad port 0")
        port = port or DEFAULT_PORT[parts.scheme]
        if not parts.hostname:
            raise BrokerURLError(f"--mqtt {shown}: no host")
        _check_host(parts.hostname, shown)
        for value, what in ((username, "username"), (password, "password")):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_SECRET):
                raise BrokerURLError(f"MQTT {what} must be text of at most {MAX_SECRET} chars")
        for path, what in ((ca_file, "CA file"), (cert_file, "certificate"), (key_file, "key")):
            if path is not None and (not isinstance(path, str) or not Path(path).is_file()):
                raise BrokerURLError(f"{what} {path}: no such file")
        settings = cls(
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
        try:  # a CA, certificate or key that will not load is a setup error, found now
            settings.tls_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise BrokerURLError(f"--mqtt {shown}: TLS files unusable: {exc}") from exc
        return settings

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> BrokerSettings:
        """`[mqtt]` table of a TOML file: url, username, password, ca_file, cert_file, key_file.

        Every problem is a BrokerURLError of one line naming the file and the key.
        """
        try:
            text = read_text_file(path, max_bytes=MAX_CONFIG_BYTES, what="an MQTT settings file")
        except InputFileError as exc:
            raise BrokerURLError(f"{exc.path}: cannot read MQTT settings: {exc.problem}") from exc
        settings = cls.from_config_text(text, str(path), **overrides)
        table = tomllib.loads(text)["mqtt"]  # parsed fine just now
        if "password" in table or urlsplit(table["url"]).password:
            with contextlib.suppress(OSError):  # it was just read: a race at worst, no harm
                if os.stat(path).st_mode & 0o077:
                    _LOGGER.warning(
                        "%s holds an MQTT password and other users may read it; chmod 600 it",
                        path,
                    )
        return settings

    @classmethod
    def from_config_text(cls, text: str, source: str, **overrides: Any) -> BrokerSettings:
        """`from_config` on text already read; `source` (the file) starts every message."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BrokerURLError(f"{source}: not valid TOML: {exc}") from exc
        except RecursionError as exc:  # tomllib recurses per nesting level
            raise BrokerURLError(f"{source}: nested too deeply") from exc.with_traceback(None)
        except ValueError as exc:  # tomllib lets int()'s 4300-digit limit through unwrapped
            raise BrokerURLError(f"{source}: not valid TOML: a number too long to read") from exc
        table = data.get("mqtt")
        if not isinstance(table, dict):
            raise BrokerURLError(f'{source}: needs an [mqtt] table with url = "mqtt://host:port"')
        unknown = sorted(set(table) - {"url", *_CONFIG_KEYS})
        if unknown:
            known = ", ".join(("url", *_CONFIG_KEYS))
            raise BrokerURLError(f"{source}: [mqtt] has unknown key {unknown[0]!r} ({known})")
        for key, value in table.items():
            if not isinstance(value, str):
                kind = type(value).__name__
                raise BrokerURLError(f'{source}: [mqtt] {key} must be a "string", not {kind}')
        if "url" not in table:
            raise BrokerURLError(f'{source}: [mqtt] needs url = "mqtt://host:port"')
        options = {k: table[k] for k in _CONFIG_KEYS if k in table} | {
            k: v for k, v in overrides.items() if v is not None
        }
        try:
            return cls.from_url(table["url"], **options)
        except BrokerURLError as exc:
            raise BrokerURLError(f"{source}: {exc}") from exc

    @property
    def display(self) -> str:
        """For messages: scheme, user name and host, never the password."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    def with_port(self, port: int) -> BrokerSettings:
        return replace(self, port=port)

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _check_host(host: str, shown: str) -> None:
    """A host name the resolver can take: IP literal, or IDNA labels of 1-63 chars."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return
    labels = host.rstrip(".").split(".")
    if len(host) > MAX_HOST_CHARS or any(not 0 < len(label) <= 63 for label in labels):
        raise BrokerURLError(f"--mqtt {shown}: host name is too long or has an empty label")
    if host.isascii() and not _HOST_CHARS.fullmatch(host):
        raise BrokerURLError(f"--mqtt {shown}: host name {host[:40]!r} is not valid")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise BrokerURLError(f"--mqtt {shown}: host name {host[:40]!r} is not valid") from exc


def _redact(url: str) -> str:
    """The URL with any password replaced by ***, even when the URL does not parse.

    Everything between the user name's ':' and the last '@' goes, since a password may hold
    '@', '/', '?' or '#'; without an '@', a "port" that is not a number goes too (a password
    whose host was forgotten).
    """
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    at = url.rfind("@", start)
    if at >= 0:
        user, colon, _ = url[start:at].partition(":")
        head = f"{url[:start]}{user}:***@" if colon else url[: at + 1]
        return head + _redact_port(url[at + 1 :])  # a password may stand after the host too
    return url[:start] + _redact_port(url[start:])


def _redact_port(hostport: str) -> str:
    """`host:port`, with a "port" that is not a number hidden (a password typed there)."""
    host, colon, port = hostport.rpartition(":")
    port = port.split("/", 1)[0]
    if colon and port and not port.isdigit() and "]" not in port:  # "]": an IPv6 literal
        return f"{host}:***"
    return hostport


def make_client(
    settings: BrokerSettings,
    *,
    identifier: str,
    will: Will | None = None,
    clean_session: bool = True,
    max_queued_incoming: int = 1000,
    queue_type: type[asyncio.Queue[aiomqtt.Message]] | None = None,
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
        queue_type=queue_type,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
