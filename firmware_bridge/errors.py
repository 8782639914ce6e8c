"""Exceptions: one root, subclasses named for what the caller should do."""

from __future__ import annotations


class MassagerError(Exception):
    """Root of every error this package raises on purpose."""


class ProtocolError(MassagerError):
    """A frame could not be encoded or decoded; the bytes are never acted on."""


class SafetyLimitError(MassagerError):
    """A value outside the safety limits was about to be sent; it was not sent."""


class DeviceNotFoundError(MassagerError):
    """No massager matched the address, name or service UUID; check power and range."""


class DeviceConnectionError(MassagerError):
    """The BLE connection could not be established or was refused."""


class BluetoothUnavailableError(DeviceConnectionError):
    """No usable Bluetooth stack or adapter (no BlueZ/D-Bus, adapter off, no permission)."""


class ConnectionLostError(DeviceConnectionError):
    """The link dropped; output is latched off until an explicit new start."""


class DeviceTimeoutError(MassagerError, TimeoutError):
    """The device did not answer in time (also a TimeoutError)."""


class DeviceRejectedError(MassagerError):
    """The device answered a command with a nack; `code` says why."""

    def __init__(self, message: str, *, code: int, frame_type: int) -> None:
        super().__init__(message)
        self.code = code
        self.frame_type = frame_type


class DeviceIdInUseError(MassagerError):
    """Another live controller already publishes under this device id on the broker."""

    def __init__(self, message: str, *, device_id: str | None = None) -> None:
        super().__init__(message)
        self.device_id = device_id


class BrokerSetupError(MassagerError):
    """The MQTT broker cannot be used as configured (its certificate does not verify, or its
    ACL refuses this controller); retrying will not help: the settings or the broker must change."""


class DeviceIdForbiddenError(BrokerSetupError):
    """The broker's ACL does not let this controller publish and read back its own device id's
    topics; check the ACL for its user, or use the --device-id the ACL allows."""

    def __init__(
        self, message: str, *, device_id: str | None = None, username: str | None = None
    ) -> None:
        super().__init__(message)
        self.device_id = device_id
        self.username = username
