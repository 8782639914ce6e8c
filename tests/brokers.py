"""MQTT brokers for tests: Debian's mosquitto from a temp dir, and the embedded amqtt broker.

Both listen on 127.0.0.1 only, on a free port. The fixtures are registered suite-wide by
`pytest_plugins = ("tests.brokers",)` in tests/conftest.py:

- `mosquitto`: a running mosquitto (skipped when it is not installed, failed when CI=true);
- `mosquitto_factory`: start several, or configured ones (`users=`, `acl=`, `tls=`,
  `extra_config=`); `CertificateAuthority` makes the CA and server certificate for `tls=`;
- `embedded_broker`: a running `EmbeddedBroker`;
- `any_broker`: each of the two in turn, for tests that need only `.settings`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware_bridge.telemetry.broker import LOOPBACK, EmbeddedBroker, broker_listening
from firmware_bridge.telemetry.mqtt import BrokerSettings

__all__ = [
    "MOSQUITTO_NOT_INSTALLED",
    "CertificateAuthority",
    "Mosquitto",
    "MosquittoFactory",
    "Received",
    "RunningBroker",
    "ServerCertificate",
    "any_broker",
    "embedded_broker",
    "free_port",
    "mosquitto",
    "mosquitto_bin",
    "mosquitto_factory",
    "next_message",
    "require_mosquitto",
]

MOSQUITTO_NOT_INSTALLED = "mosquitto is not installed (apt-get install mosquitto)"
START_TIMEOUT_S = 5.0  # mosquitto listens within ~10 ms here; a loaded CI runner gets far more
STOP_TIMEOUT_S = 5.0  # SIGTERM → exit takes a few ms; past this the broker is SIGKILLed
POLL_S = 0.005  # how often start() checks whether the broker accepts connections yet
PORT_ATTEMPTS = 3  # a free port can be taken by someone else before mosquitto binds it
_SBIN = "/usr/sbin:/usr/local/sbin"  # Debian installs the broker here, often not on a user's PATH
CERT_DAYS = 2  # test certificates outlive any test run, and nothing else
SERVER_NAMES = ("127.0.0.1", "localhost")  # what the brokers' clients connect to


def mosquitto_bin() -> str | None:
    """Path of the mosquitto broker executable, or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=_SBIN)


def _mosquitto_passwd_bin() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path=_SBIN)
    if found is None:
        raise FileNotFoundError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick; someone may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, data: bytes) -> Path:
    """Write `data` to a new file readable by its owner only (0600 whatever the umask)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path


def _names(names: Sequence[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


@dataclass(frozen=True)
class ServerCertificate:
    """A broker's certificate and key (PEM files; the key 0600), the names it is valid for and
    the file of the CA that signed it."""

    cert_file: Path
    key_file: Path
    names: tuple[str, ...]
    ca_file: Path


class CertificateAuthority:
    """A private CA made for one test: its certificate in `ca_file` (PEM), its key in memory.

    Certificates carry what Python's default context checks, strict X.509 (the default from
    Python 3.13) included: a CA with critical basic constraints and key usage, servers with
    subject alternative names, key identifiers and serverAuth. EC P-256 keys: quick to make.
    """

    def __init__(self, directory: Path, name: str = "firmware-bridge test CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        public = self._key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, names: Sequence[str] = SERVER_NAMES, *, stem: str = "server"
    ) -> ServerCertificate:
        """A server certificate for `names` (IP addresses or DNS names), signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_file = self.directory / f"{stem}.pem"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_file = _write_private(self.directory / f"{stem}.key", key_pem)
        return ServerCertificate(cert_file, key_file, tuple(names), self.ca_file)


class Mosquitto:
    """Debian's mosquitto on 127.0.0.1 with its config, log and password file in `workdir`.

    `start()` picks a free port the first time and reuses it on every later start, so a test can
    stop (SIGTERM) or kill (SIGKILL) the broker and bring it back where its clients expect it.
    Anonymous clients are allowed unless `users` ({name: password}) is given; `acl` (the lines
    of a mosquitto ACL file) limits what each may read and write; with `tls` (a server
    certificate from `CertificateAuthority.issue`) the one listener speaks TLS only. `close()`
    (or leaving the `with` block) stops it and removes a temp dir it created.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        acl: Sequence[str] | None = None,
        tls: ServerCertificate | None = None,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        found = binary or mosquitto_bin()
        if found is None:
            raise FileNotFoundError(MOSQUITTO_NOT_INSTALLED)
        self._binary = found
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="mosquitto-")
            workdir = Path(self._tempdir.name)
        self.workdir = workdir
        self.users = dict(users or {})
        self.acl = None if acl is None else list(acl)
        self.tls = tls
        self.extra_config = list(extra_config)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("mosquitto has no port before its first start()")
        return self._port

    @property
    def acl_path(self) -> Path:
        return self.workdir / "acl"

    @property
    def settings(self) -> BrokerSettings:
        """Where to connect (trusting the test CA with TLS), without credentials."""
        if self.tls is None:
            return BrokerSettings(host=LOOPBACK, port=self.port)
        ca_file = str(self.tls.ca_file)
        return BrokerSettings(host=LOOPBACK, port=self.port, tls=True, ca_file=ca_file)

    def settings_as(self, user: str) -> BrokerSettings:
        """`settings` with the name and password of one of `users`."""
        return replace(self.settings, username=user, password=self.users[user])

    @property
    def url(self) -> str:
        """`mqtt://` or, with TLS, `mqtts://` on 127.0.0.1 (never with credentials)."""
        return f"{'mqtt' if self.tls is None else 'mqtts'}://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """The broker's log so far (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> Self:
        """Start the broker (on the same port as before, if it ran before) and wait until it
        accepts connections."""
        if self.running:
            raise RuntimeError(f"mosquitto is already running on port {self._port}")
        if self._port is not None:
            self._launch(self._port)
            return self
        attempts_left = PORT_ATTEMPTS
        while True:
            port = free_port()
            try:
                self._launch(port)
            except RuntimeError:
                attempts_left -= 1
                if not attempts_left or "Address already in use" not in self.log_text():
                    raise
            else:
                self._port = port
                return self

    def stop(self) -> None:
        """SIGTERM (a clean broker shutdown) and wait; SIGKILL if it does not exit in time."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything itself."""
        self._end(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Mosquitto {LOOPBACK}:{self._port} {state} in {self.workdir}>"

    def _write_config(self, port: int) -> None:
        lines = [f"listener {port} {LOOPBACK}"]
        if self.tls is not None:  # TLS settings belong to the listener line above them
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        lines += [
            # As root, mosquitto would switch to the "mosquitto" user, which cannot write to our
            # 0700 temp dir; name the current user instead (a no-op when not root).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "set_tcp_nodelay true",  # as in production: Nagle adds 40+ ms to command round trips
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %H:%M:%S",
        ]
        if self.users:
            password_file = self.workdir / "passwords"
            self._write_passwords(password_file)
            lines += [f"password_file {password_file}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            _write_private(self.acl_path, ("\n".join(self.acl) + "\n").encode())
            lines.append(f"acl_file {self.acl_path}")
        lines += self.extra_config
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _write_passwords(self, path: Path) -> None:
        passwd = _mosquitto_passwd_bin()
        for index, (name, password) in enumerate(self.users.items()):
            create = ["-c"] if index == 0 else []  # -c starts a new file; later users append
            subprocess.run(
                [passwd, "-b", *create, str(path), name, password],
                check=True,
                capture_output=True,
                timeout=STOP_TIMEOUT_S,
            )
        path.chmod(0o600)  # the broker's hashes of every password: for its owner's eyes only

    def _launch(self, port: int) -> None:
        self._write_config(port)
        with (self.workdir / "mosquitto.stderr").open("ab") as stderr:
            self._process = subprocess.Popen(
                [self._binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not broker_listening(LOOPBACK, port, timeout=POLL_S * 10):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                raise RuntimeError(
                    f"mosquitto did not start on {LOOPBACK}:{port} within {START_TIMEOUT_S} s; "
                    f"its log:\n{self.log_text()}"
                )
            time.sleep(POLL_S)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(how)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def require_mosquitto() -> str:
    """The mosquitto executable; skip the test without it, or fail it on CI (CI=true)."""
    binary = mosquitto_bin()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MOSQUITTO_NOT_INSTALLED}: CI must run the broker tests", pytrace=False)
        pytest.skip(MOSQUITTO_NOT_INSTALLED)
    return binary


class MosquittoFactory(Protocol):
    def __call__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        acl: Sequence[str] | None = None,
        tls: ServerCertificate | None = None,
        extra_config: Sequence[str] = (),
    ) -> Mosquitto: ...


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    """Start brokers inside a test: `mosquitto_factory(users={"alice": "s3cret"})`; with
    `acl=[...]` (lines of a mosquitto ACL file) and `tls=CertificateAuthority(dir).issue()`."""
    binary = require_mosquitto()
    with ExitStack() as cleanup:

        def start(
            *,
            users: Mapping[str, str] | None = None,
            acl: Sequence[str] | None = None,
            tls: ServerCertificate | None = None,
            extra_config: Sequence[str] = (),
        ) -> Mosquitto:
            broker = Mosquitto(
                tmp_path_factory.mktemp("mosquitto"),
                users=users,
                acl=acl,
                tls=tls,
                extra_config=extra_config,
                binary=binary,
            )
            cleanup.callback(broker.close)
            return broker.start()

        yield start


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A running mosquitto allowing anonymous clients (log in `mosquitto.workdir`)."""
    return mosquitto_factory()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """A running embedded (amqtt) broker on a free loopback port."""
    async with EmbeddedBroker(port=0) as broker:
        yield broker


class RunningBroker(Protocol):
    @property
    def settings(self) -> BrokerSettings: ...


@pytest.fixture(params=["mosquitto", "embedded"])
async def any_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningBroker]:
    """mosquitto, then the embedded broker: for tests that only connect to a broker."""
    if request.param == "mosquitto":
        workdir = tmp_path_factory.mktemp("mosquitto")
        with Mosquitto(workdir, binary=require_mosquitto()) as broker:
            yield broker
    else:
        async with EmbeddedBroker(port=0) as embedded:
            yield embedded


@dataclass(frozen=True)
class Received:
    """One MQTT message as a test sees it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


async def next_message(client: Any, *, timeout_s: float = 2.0) -> Received:
    """The next message `client` receives (an aiomqtt client from `make_client`, typed Any
    because only firmware_bridge.telemetry.mqtt imports aiomqtt)."""
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            payload = message.payload
            return Received(
                topic=str(message.topic),
                payload=bytes(payload)
                if isinstance(payload, bytes | bytearray)
                else str(payload).encode(),
                qos=int(message.qos),
                retain=bool(message.retain),
            )
    raise AssertionError("the client disconnected before a message arrived")
