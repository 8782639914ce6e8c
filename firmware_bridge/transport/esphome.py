"""Massagers in other rooms: ESPHome Bluetooth proxies as bleak backends (bleak-esphome).

An ESPHome Bluetooth proxy is an ESP32 that listens for Bluetooth LE advertisements and, with
active connections on, connects to devices on a program's behalf over the ESPHome native API
(TCP port 6053, usually Noise-encrypted). `open_proxies()` connects to each proxy, sets up
habluetooth's `BluetoothManager` (the registry of scanners and connection paths bleak-esphome
registers into) and yields a `Proxies` whose `ProxyBleakScanner`/`ProxyBleakClient` are ordinary
bleak backends: `BleakScanner(backend=ProxyBleakScanner)` hears what every proxy hears, and
`BleakClient(device, backend=ProxyBleakClient)` connects through the proxy that hears the device
loudest and has a free connection slot (about three per proxy).

bleak-esphome, habluetooth and aioesphomeapi are imported only when proxies are opened (about
half a second), never when this module is imported: `pip install 'firmware-bridge[esphome]'`.
habluetooth's global manager is process-wide: one `open_proxies()` at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakError

from firmware_bridge.errors import DeviceConnectionError

if TYPE_CHECKING:
    from aioesphomeapi.client import APIClient
    from aioesphomeapi.model import DeviceInfo
    from aioesphomeapi.reconnect_logic import ReconnectLogic
    from bleak_esphome.backend.client import ESPHomeClientData
    from habluetooth import BluetoothManager, BluetoothServiceInfoBleak

    from firmware_bridge.compose import Stack

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT = 6053  # the ESPHome native API
FLAG = "--esphome"
KEY_ENV = "MASSAGER_ESPHOME_KEY"
CONNECT_TIMEOUT_S = 10.0  # per proxy, TCP connect + Noise handshake + hello + device info
NOISE_KEY_BYTES = 32  # `api: encryption: key:` is 32 random bytes, base64-encoded
SLOTS_PER_PROXY = 3  # ESPHome's default `bluetooth_proxy` connection slots on an ESP32
EXTRA = "`pip install 'firmware-bridge[esphome]'`"
MAX_DETAIL_CHARS = 100  # aioesphomeapi's or the OS's own words, kept after the advice


class EsphomeSettingError(ValueError):
    """A proxy address or noise key that cannot be used, as one line naming where it came from."""


class ProxyError(DeviceConnectionError):
    """A proxy could not be used: unreachable, wrong noise key, or no active connections."""


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyAddress:
    """Where one proxy's native API listens."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_proxy(text: str) -> ProxyAddress:
    """`HOST[:PORT]` (IPv6 as `[ADDR]:PORT`); raises EsphomeSettingError naming --esphome."""
    raw = text.strip()
    usage = f"{FLAG} {text!r}: expected HOST or HOST:PORT (e.g. {FLAG} proxy-kitchen.local:6053)"
    if not raw or any(c.isspace() for c in raw) or "/" in raw or "@" in raw:
        raise EsphomeSettingError(usage)
    port_text: str | None = None
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise EsphomeSettingError(usage)
        port_text = rest[1:] if rest else None
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    else:
        host = raw  # a host name, an IPv4 address, or a bare IPv6 address (no port)
    if not host:
        raise EsphomeSettingError(usage)
    if port_text is None:
        return ProxyAddress(host)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise EsphomeSettingError(
            f"{FLAG} {text!r}: port {port_text!r} is not a number from 1 to 65535 "
            f"(the ESPHome API listens on {DEFAULT_PORT})"
        )
    return ProxyAddress(host, int(port_text))


def parse_proxies(texts: Iterable[str]) -> list[ProxyAddress]:
    """Each of `texts` (a repeated flag; commas also separate), in order, without repeats."""
    found: list[ProxyAddress] = []
    for text in texts:
        for part in text.split(","):
            address = parse_proxy(part)
            if address not in found:
                found.append(address)
    if not found:
        raise EsphomeSettingError(f"{FLAG}: name at least one proxy as HOST or HOST:PORT")
    return found


def parse_noise_key(text: str | None, *, source: str = KEY_ENV) -> str | None:
    """The proxy's `api: encryption: key:` (None or empty: a proxy without encryption)."""
    if text is None or not text.strip():
        return None
    key = text.strip()
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != NOISE_KEY_BYTES:
        raise EsphomeSettingError(
            f"{source}: not an ESPHome noise key; copy the 44-character base64 value of "
            "`api: encryption: key:` from the proxy's YAML"
        )
    return key


# -- one proxy -----------------------------------------------------------------------------


@dataclass
class Proxy:
    """One connected proxy: its name, Bluetooth MAC (its scanner's source) and slots."""

    address: ProxyAddress
    name: str = ""
    source: str = ""
    connectable: bool = False
    _client_data: ESPHomeClientData | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.name else str(self.address)

    @property
    def slots(self) -> tuple[int, int] | None:
        """(free, limit) connection slots as the proxy last reported them; None: no report."""
        data = self._client_data
        if data is None or not self.connectable:
            return None
        device = data.bluetooth_device
        return (device.ble_connections_free, device.ble_connections_limit)

    @property
    def online(self) -> bool:
        return self._client_data is not None


def _api_error(address: ProxyAddress, exc: BaseException, keyed: bool) -> ProxyError:
    """One line for why the proxy's API could not be used (aioesphomeapi's own words kept)."""
    from aioesphomeapi.core import (  # noqa: PLC0415 - lazy: aioesphomeapi costs ~0.3 s
        EncryptionHelloAPIError,
        EncryptionPlaintextAPIError,
        HandshakeAPIError,
        InvalidAuthAPIError,
        InvalidEncryptionKeyAPIError,
        RequiresEncryptionAPIError,
        ResolveAPIError,
    )

    root: BaseException = exc
    for _ in range(8):  # the deepest cause: the OS's own words ("Connect call failed") read best
        if root.__cause__ is None:
            break
        root = root.__cause__
    said = " ".join(str(root).split()) or type(root).__name__
    if len(said) > MAX_DETAIL_CHARS:
        said = said[: MAX_DETAIL_CHARS - 1] + "…"
    if isinstance(exc, InvalidEncryptionKeyAPIError):
        why = f"rejected the noise key; set {KEY_ENV} to the `api: encryption: key:` of its YAML"
    elif isinstance(exc, RequiresEncryptionAPIError):
        why = f"requires encryption; set {KEY_ENV} to the `api: encryption: key:` of its YAML"
    elif isinstance(exc, EncryptionPlaintextAPIError | EncryptionHelloAPIError):
        why = f"has no API encryption but a noise key was given; unset {KEY_ENV} (or add one)"
    elif isinstance(exc, InvalidAuthAPIError):
        why = "wants an API password; use an encryption key instead (passwords are not supported)"
    elif isinstance(exc, ResolveAPIError):
        why = "has a name that does not resolve; check the spelling or use its IP address"
    elif isinstance(exc, HandshakeAPIError) and keyed:
        why = f"failed the encrypted handshake; check {KEY_ENV}"
    else:
        why = "is unreachable; is it powered, on this network, and is the address right?"
    return ProxyError(f"ESPHome proxy {address} {why} ({said})")


class _ProxyLink:
    """One proxy's API connection, kept up by aioesphomeapi's ReconnectLogic, wired to
    habluetooth following bleak_esphome.connect_scanner's contract for its caller."""

    def __init__(self, proxy: Proxy, noise_psk: str | None, client_info: str) -> None:
        self.proxy = proxy
        self._noise_psk = noise_psk
        self._client_info = client_info
        self._cli: APIClient | None = None
        self._logic: ReconnectLogic | None = None
        self._first: asyncio.Future[None] | None = None
        self.ready = False  # connected at least once
        self._undo: list[Callable[[], None]] = []

    async def start(self, timeout: float) -> None:  # noqa: ASYNC109 - one bound per proxy
        from aioesphomeapi.client import APIClient  # noqa: PLC0415 - lazy: see module
        from aioesphomeapi.reconnect_logic import ReconnectLogic  # noqa: PLC0415

        address = self.proxy.address
        self._cli = APIClient(
            address.host,
            address.port,
            None,  # password: ESPHome deprecated it; the noise key is the way
            noise_psk=self._noise_psk,
            client_info=self._client_info,
        )
        self._logic = ReconnectLogic(
            client=self._cli,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_connect_error=self._on_connect_error,
        )
        self._first = asyncio.get_running_loop().create_future()
        await self._logic.start()
        try:
            async with asyncio.timeout(timeout):
                await self._first
        except TimeoutError:
            raise ProxyError(
                f"ESPHome proxy {address} is unreachable: no answer within {timeout:g} s; is it "
                "powered, on this network, and is the address right?"
            ) from None
        except ProxyError:
            raise
        except Exception as exc:
            raise _api_error(address, exc, self._noise_psk is not None) from exc

    async def _on_connect(self) -> None:
        import habluetooth  # noqa: PLC0415 - lazy: see module
        from aioesphomeapi import BluetoothProxyFeature  # noqa: PLC0415
        from bleak_esphome import connect_scanner  # noqa: PLC0415

        cli = self._cli
        assert cli is not None  # noqa: S101 - ReconnectLogic calls this only after start()
        problem: Exception | None = None
        try:
            info: DeviceInfo = await cli.device_info()
            assert cli.api_version is not None  # noqa: S101 - set by the hello exchange
            flags = info.bluetooth_proxy_feature_flags_compat(cli.api_version)
            if not flags & BluetoothProxyFeature.PASSIVE_SCAN:
                problem = ProxyError(
                    f"ESPHome proxy {self.proxy.address} ({info.name}) is not a Bluetooth "
                    "proxy; add `bluetooth_proxy:` to its YAML"
                )
            else:
                data = connect_scanner(cli, info, True)
                scanner = data.scanner
                assert scanner is not None  # noqa: S101 - connect_scanner always sets it
                self.proxy.source = scanner.source
                self._undo.append(scanner.async_setup())
                self._undo.append(habluetooth.get_manager().async_register_scanner(scanner))
        except Exception as exc:  # noqa: BLE001 - whatever it is, start() reports it
            problem = exc
        if problem is not None:
            self._fail_first(problem)
            await cli.disconnect()
            return
        self.proxy.name = info.friendly_name or info.name
        self.proxy.connectable = bool(flags & BluetoothProxyFeature.ACTIVE_CONNECTIONS)
        self.proxy._client_data = data
        _LOGGER.info(
            "ESPHome proxy %s: connected (%s)",
            self.proxy.label,
            "active connections" if self.proxy.connectable else "passive: listens only",
        )
        self.ready = True
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _on_disconnect(self, expected: bool) -> None:
        _LOGGER.log(
            logging.DEBUG if expected else logging.WARNING,
            "ESPHome proxy %s: API connection lost; reconnecting",
            self.proxy.label,
        )
        self._teardown()

    async def _on_connect_error(self, exc: Exception) -> None:
        self._fail_first(exc)

    def _fail_first(self, exc: Exception) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_exception(exc)

    def _teardown(self) -> None:
        """connect_scanner's contract: unavailable first, then the clients' disconnect
        callbacks, then the scanner's own teardown and unregistration."""
        data, self.proxy._client_data = self.proxy._client_data, None
        undo, self._undo = self._undo, []
        if data is not None:
            data.bluetooth_device.async_set_unavailable()
            for callback in list(data.disconnect_callbacks):
                try:
                    callback()
                except Exception:
                    _LOGGER.exception("ESPHome proxy %s: disconnect callback", self.proxy.label)
            data.disconnect_callbacks.clear()
        for step in undo:
            step()

    async def stop(self) -> None:
        if self.proxy._client_data is not None:
            self.proxy._client_data.bluetooth_device.async_set_unavailable()
        if self._cli is not None and not self.ready:
            # Never connected: drop a handshake in flight, or stopping waits out its 30 s.
            self._cli.force_disconnect()
        try:
            if self._logic is not None:
                await self._logic.stop()
        finally:
            try:
                if self._cli is not None:
                    await self._cli.disconnect()
            finally:
                if self._first is not None and not self._first.done():
                    self._first.cancel()
                self._teardown()


# -- bleak backends ------------------------------------------------------------------------


def _opened(proxies: Proxies | None) -> Proxies:
    if proxies is None:
        raise BleakError(
            "ESPHome proxy backends need proxies=: the Proxies that open_proxies() yields"
        )
    return proxies


class ProxyBleakScanner(BaseBleakScanner):
    """bleak scanner backend: every advertisement any open proxy hears, active connections or
    not (what was heard before the scan started is replayed first)."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        proxies: Proxies | None = None,
        **kwargs: Any,  # bleak passes bluez/cb
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._proxies = _opened(proxies)
        self._cancel: Callable[[], None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._cancel = self._proxies.listen(self._heard)

    async def stop(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()

    def _heard(self, device: BLEDevice, adv: AdvertisementData) -> None:
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        self.seen_devices[device.address] = (device, adv)
        self.call_detection_callbacks(device, adv)


class ProxyBleakClient(BaseBleakClient):
    """bleak client backend that picks a proxy when connecting (the loudest that hears the
    device and has a free slot) and then passes every call to bleak-esphome's client."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 30.0,
        proxies: Proxies | None = None,
        **kwargs: Any,  # bleak passes services/bluez/winrt; the retry connector passes more
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._proxies = _opened(proxies)
        self._inner: BaseBleakClient | None = None
        self.proxy: str | None = None  # the proxy the link runs through, once connected

    def _route(self) -> tuple[BaseBleakClient, str]:
        """A bleak-esphome client through the best proxy, or one line on why there is none."""
        heard = self._proxies.manager.async_scanner_devices_by_address(self.address, False)
        if not heard:
            # A plain BleakError: bleak-retry-connector backs off 4 s, nine times, for
            # BleakDeviceNotFoundError (a local adapter out of slots can look like that).
            raise BleakError("not found: no ESPHome proxy hears it")
        able = [d for d in heard if d.scanner.connectable and d.scanner.connector is not None]
        if not able:
            raise BleakError(
                "only ESPHome proxies without active connections hear it; set "
                "`bluetooth_proxy: active: true`"
            )
        free = [d for d in able if d.scanner.connector and d.scanner.connector.can_connect()]
        if not free:
            names = ", ".join(sorted({d.scanner.name for d in able}))
            _LOGGER.info("%s: every proxy that hears it is full: %s", self.address, names)
            # Worded without "connection slot": bleak-retry-connector would back off 4 s,
            # nine times, waiting for one; a person at the massager is better told at once.
            raise BleakError(
                f"no free slot on the ESPHome proxies that hear it (~{SLOTS_PER_PROXY} "
                "connections each); free one or add a proxy"
            )
        best = max(free, key=lambda d: d.advertisement.rssi)
        connector = best.scanner.connector
        assert connector is not None  # noqa: S101 - filtered above
        client = connector.client(
            best.ble_device,
            disconnected_callback=self._disconnected_callback,
            timeout=self._timeout,
        )
        return client, best.scanner.name

    @property
    def name(self) -> str:
        return self._inner.name if self._inner is not None else self.address

    @property
    def mtu_size(self) -> int:
        return self._inner.mtu_size if self._inner is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._inner is not None and self._inner.is_connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        inner, proxy = self._route()
        self._inner = inner
        try:
            await inner.connect(pair=pair, **kwargs)
        except BaseException:
            self._inner = None
            raise
        self.proxy = proxy
        self.services = inner.services
        _LOGGER.debug("%s: connected through ESPHome proxy %s", self.address, proxy)

    def set_disconnected_callback(self, callback: Callable[[], None] | None, **kwargs: Any) -> None:
        super().set_disconnected_callback(callback, **kwargs)
        if self._inner is not None:
            self._inner.set_disconnected_callback(callback, **kwargs)

    def _connected(self) -> BaseBleakClient:
        if self._inner is None:
            raise BleakError(f"{self.address}: not connected")
        return self._inner

    async def disconnect(self) -> None:
        if self._inner is not None:
            await self._inner.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        await self._connected().pair(*args, **kwargs)

    async def unpair(self) -> None:
        await self._connected().unpair()

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, **kwargs: Any
    ) -> bytearray:
        return await self._connected().read_gatt_char(characteristic, **kwargs)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, **kwargs: Any
    ) -> bytearray:
        return await self._connected().read_gatt_descriptor(descriptor, **kwargs)

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        await self._connected().write_gatt_char(characteristic, data, response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        await self._connected().write_gatt_descriptor(descriptor, data)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        await self._connected().start_notify(characteristic, callback, **kwargs)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await self._connected().stop_notify(characteristic)


# -- all proxies ---------------------------------------------------------------------------


Heard = Callable[[BLEDevice, AdvertisementData], None]


@dataclass
class Proxies:
    """The open proxies and the bleak backends that reach massagers through them."""

    proxies: list[Proxy]
    manager: BluetoothManager = field(repr=False)
    scanner: type[BaseBleakScanner] = ProxyBleakScanner
    client: type[BaseBleakClient] = ProxyBleakClient
    _listeners: set[Heard] = field(default_factory=set, repr=False)

    @property
    def scanner_kwargs(self) -> dict[str, Any]:
        return {"proxies": self}

    @property
    def client_kwargs(self) -> dict[str, Any]:
        return {"proxies": self}

    def stack(self) -> Stack:
        """These backends as `firmware_bridge.compose.Stack` for `open_hardware(stack=...)`."""
        from firmware_bridge.compose import Stack  # noqa: PLC0415 - the composition root

        return Stack(self.scanner, self.client, self.scanner_kwargs, self.client_kwargs)

    def listen(self, heard: Heard) -> Callable[[], None]:
        """Call `heard` for every advertisement, the ones already heard first; returns the
        function that stops it."""
        for info in self.manager.async_discovered_service_info(False):
            heard(info.device, info.advertisement)
        self._listeners.add(heard)
        return lambda: self._listeners.discard(heard)

    def _discovered(self, info: BluetoothServiceInfoBleak) -> None:
        for heard in list(self._listeners):
            try:
                heard(info.device, info.advertisement)
            except Exception:
                _LOGGER.exception("ESPHome proxies: advertisement listener")


def _manager_class() -> type[BluetoothManager]:
    from bluetooth_adapters import BluetoothAdapters  # noqa: PLC0415 - lazy: see module
    from habluetooth import BluetoothManager  # noqa: PLC0415

    class NoLocalAdapters(BluetoothAdapters):
        """Proxies only: habluetooth is not to look for (or recover) this machine's adapters."""

        @property
        def adapters(self) -> dict[str, Any]:
            return {}

        @property
        def default_adapter(self) -> str:
            return "hci0"

    class ProxyManager(BluetoothManager):
        """habluetooth's manager, stand-alone: what Home Assistant would be told of new
        advertisements (connectable or not) goes to `on_discovery`."""

        def __init__(self) -> None:
            super().__init__(bluetooth_adapters=NoLocalAdapters())
            self.on_discovery: Callable[[BluetoothServiceInfoBleak], None] | None = None

        def _discover_service_info(self, service_info: BluetoothServiceInfoBleak) -> None:
            if self.on_discovery is not None:
                self.on_discovery(service_info)

    return ProxyManager


@asynccontextmanager
async def open_proxies(
    hosts: Sequence[str | ProxyAddress],
    noise_psk: str | None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    need_connections: bool = True,
    client_info: str = "firmware-bridge",
) -> AsyncIterator[Proxies]:
    """Connect to each ESPHome proxy (`HOST[:PORT]` strings or ProxyAddress) and yield the
    bleak backends that reach massagers through them; everything is closed on exit.

    `noise_psk`: the proxies' `api: encryption: key:` (one key for all; None: no encryption).
    Raises EsphomeSettingError for a bad address or key, ProxyError (one line) when a proxy is
    unreachable or refuses the key, and, with `need_connections`, when no proxy has active
    connections. After the first connection each proxy is reconnected in the background.
    """
    addresses = parse_proxies(h if isinstance(h, str) else str(h) for h in hosts)
    key = parse_noise_key(noise_psk)
    try:
        import habluetooth  # noqa: PLC0415 - lazy: see module
        from habluetooth.central_manager import CentralBluetoothManager  # noqa: PLC0415
        from habluetooth.usage import uninstall_multiple_bleak_catcher  # noqa: PLC0415
    except ImportError as exc:
        raise ProxyError(f"ESPHome proxies need bleak-esphome: {EXTRA} ({exc})") from exc

    previous = CentralBluetoothManager.manager
    manager: Any = _manager_class()()
    habluetooth.set_manager(manager)
    links: list[_ProxyLink] = []
    try:
        await manager.async_setup()
        # habluetooth swaps bleak.BleakScanner/BleakClient for its wrappers process-wide (Home
        # Assistant's way); we route through bleak's backend seam instead, so swap them back.
        uninstall_multiple_bleak_catcher()
        links = [_ProxyLink(Proxy(address), key, client_info) for address in addresses]
        results = await asyncio.gather(
            *(link.start(connect_timeout) for link in links), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        proxies = Proxies([link.proxy for link in links], manager)
        manager.on_discovery = proxies._discovered
        passive = [p for p in proxies.proxies if not p.connectable]
        if passive and need_connections and len(passive) == len(proxies.proxies):
            names = ", ".join(p.label for p in passive)
            raise ProxyError(
                f"ESPHome proxy {names} cannot connect to devices (it only listens); set "
                "`bluetooth_proxy: active: true` in its YAML"
            )
        for proxy in passive:
            _LOGGER.warning(
                "ESPHome proxy %s only listens (no active connections); massagers it alone "
                "hears cannot be driven",
                proxy.label,
            )
        yield proxies
    finally:
        for link in links:
            try:
                await link.stop()
            except Exception:
                _LOGGER.exception("ESPHome proxy %s: closing", link.proxy.label)
        manager.async_stop()
        CentralBluetoothManager.manager = previous
