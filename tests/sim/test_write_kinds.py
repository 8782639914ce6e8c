"""Both simulator tiers record whether each control write was a Write Request or a Command."""

from __future__ import annotations

import pytest

from firmware_bridge.protocol import CONTROL_CHAR_UUID, FrameType, QueryStatus, encode
from tests.rigs import TIERS, Rig, open_rig, until

pytestmark = pytest.mark.sim_only


def received_kinds(rig: Rig, frame_type: FrameType) -> list[bool | None]:
    return [
        r.with_response
        for r in rig.firmware.received
        if r.frame is not None and frame_type == r.frame.message.TYPE
    ]


@pytest.mark.parametrize("tier", TIERS)
async def test_write_with_and_without_response_are_told_apart(tier: str) -> None:
    async with open_rig(tier) as rig, rig.bleak_client() as client:
        await client.write_gatt_char(CONTROL_CHAR_UUID, encode(QueryStatus(), 1), response=True)
        await client.write_gatt_char(CONTROL_CHAR_UUID, encode(QueryStatus(), 2), response=False)
        await client.write_gatt_char(CONTROL_CHAR_UUID, b"\x01\x03", response=True)  # malformed
        await until(lambda: len(rig.firmware.received) == 3)
        assert [r.with_response for r in rig.firmware.received] == [True, False, True]


@pytest.mark.parametrize("tier", TIERS)
async def test_the_links_stop_is_written_with_response_and_intensity_without(tier: str) -> None:
    async with open_rig(tier) as rig, rig.link() as link:
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: link.applied == (5, 5, 5))
        result = await link.stop()
        assert result.confirmed
        stops = received_kinds(rig, FrameType.STOP)
        assert stops[0] is False  # the handshake's zero goes out without waiting (S5)
        assert stops[-1] is True  # the stop itself waits for the ATT layer's confirmation
        intensities = received_kinds(rig, FrameType.SET_INTENSITY)
        assert intensities
        assert all(kind is False for kind in intensities)
