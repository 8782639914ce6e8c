"""Shared fixtures: every link test runs the production transport over both simulator tiers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.rigs import TIERS, Rig, open_rig


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def rig(tier: str) -> AsyncIterator[Rig]:
    async with open_rig(tier) as rig:
        yield rig
