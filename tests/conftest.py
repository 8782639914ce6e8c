"""Shared fixtures: every link test runs the production transport over both simulator tiers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import Phase, settings

from firmware_bridge.cli.settings import KEYS as CONFIG_KEYS
from tests.campaign import STATS
from tests.rigs import TIERS, Rig, open_rig

pytest_plugins = ["tests.brokers", "tests.disks"]  # brokers; disks full, read-only, spied

# scripts/mutants asks only whether a test fails: shrinking a failing example to its smallest
# form can take minutes (the fault campaign replays whole sessions) and proves nothing more.
settings.register_profile("mutants", phases=[Phase.explicit, Phase.reuse, Phase.generate])


@pytest.fixture(autouse=True)
def _private_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journals and outboxes of tests never touch the user's data directory."""
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(autouse=True)
def _no_user_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The developer's own config.toml and MASSAGER_* settings never change a test's result."""
    monkeypatch.setenv("MASSAGER_CONFIG", str(tmp_path_factory.mktemp("config") / "none.toml"))
    for key in CONFIG_KEYS:
        monkeypatch.delenv(key.env, raising=False)


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def rig(tier: str) -> AsyncIterator[Rig]:
    async with open_rig(tier) as rig:
        yield rig


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--campaign-examples",
        type=int,
        default=None,
        help="fault campaign: hypothesis examples to run (8 scenarios each; default 30)",
    )


def pytest_configure(config: pytest.Config) -> None:
    wanted = config.getoption("--campaign-examples")
    if wanted is not None:
        STATS.examples_wanted = wanted


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STATS.examples:
        reasons = ", ".join(f"{r} {n}" for r, n in STATS.stop_reasons.most_common())
        terminalreporter.write_line(
            f"fault campaign: {STATS.scenarios} scenarios in {STATS.examples} examples, "
            f"{sum(STATS.faults.values())} faults took place, {STATS.seconds:.0f} s "
            f"(stop reasons: {reasons})"
        )
        faults = ", ".join(
            f"{kind} {n} ({STATS.running_faults[kind]} with output on)"
            for kind, n in sorted(STATS.faults.items())
        )
        terminalreporter.write_line(f"faults that took place: {faults}")
        terminalreporter.write_line(
            f"stop checks that found the motors running: {STATS.checked_stops}"
        )
