"""Shared fixtures: every link test runs the production transport over both simulator tiers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.rigs import TIERS, Rig, open_rig

pytest_plugins = ["tests.brokers", "tests.disks"]  # brokers; disks full, read-only, spied


@pytest.fixture(autouse=True)
def _private_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journals and outboxes of tests never touch the user's data directory."""
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def rig(tier: str) -> AsyncIterator[Rig]:
    async with open_rig(tier) as rig:
        yield rig
