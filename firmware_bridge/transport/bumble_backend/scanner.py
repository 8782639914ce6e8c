"""The bleak scanner backend over a bumble central."""

from typing import Any, Literal

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Device

from firmware_bridge.transport.bumble_backend.central import transport_lost
from firmware_bridge.transport.bumble_backend.convert import (
    BumbleDeviceDetails,
    _advertised_name,
    _advertised_uuids,
    _service_data,
)


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend listening through a bumble central."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        central: Device | None = None,
        **kwargs: Any,  # bleak passes bluez= and cb=
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if central is None:
            raise ValueError("BumbleBleakScanner needs central= (a powered-on bumble Device)")
        self._central = central
        self._active = scanning_mode == "active"
        self._started_scanning = False

    async def start(self) -> None:
        self.seen_devices = {}
        self._central.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        if not self._central.is_scanning:  # another scanner on this central may be running
            await self._central.start_scanning(active=self._active, filter_duplicates=False)
            self._started_scanning = True

    async def stop(self) -> None:
        self._central.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        gone = transport_lost(self._central)  # nothing to stop, and no answer would come
        if self._started_scanning and self._central.is_scanning and not gone:
            await self._central.stop_scanning()
        self._started_scanning = False

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        # A scan response arrives merged with the advertisement it answers: same device, fuller
        # data (e.g. the complete name), so it is reported too.
        data = advertisement.data
        service_uuids = _advertised_uuids(data)
        if not self.is_allowed_uuid(service_uuids):
            return
        key = str(advertisement.address)
        name = _advertised_name(data)
        if name is None and key in self.seen_devices:
            name = self.seen_devices[key][0].name  # keep the name a scan response told us
        tx_power: int | None = advertisement.tx_power
        if tx_power == Advertisement.TX_POWER_NOT_AVAILABLE:
            levels = data.get_all(AdvertisingData.Type.TX_POWER_LEVEL)
            tx_power = levels[0] if levels else None
        adv = AdvertisementData(
            local_name=name,
            manufacturer_data={
                company: bytes(payload)
                for company, payload in data.get_all(
                    AdvertisingData.Type.MANUFACTURER_SPECIFIC_DATA
                )
            },
            service_data=_service_data(data),
            service_uuids=service_uuids,
            tx_power=tx_power,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        address = advertisement.address
        details = BumbleDeviceDetails(self._central, address)
        device = self.create_or_update_device(key, address.to_string(False), name, details, adv)
        self.call_detection_callbacks(device, adv)
