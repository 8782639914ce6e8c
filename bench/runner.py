"""Every benchmark as one call that returns its figures beside their floors (`BENCHMARKS`).

Each entry reuses its `bench.NAME` script's functions, with counts for a full run and for
`--quick` (small counts: every benchmark still runs, the whole thing in a few minutes on two
cores; nothing is asserted about the numbers). Every run is bounded in time as well as count.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import (
    broker_network,
    capacity,
    described_stop,
    failsafe,
    fleet_scale,
    monitor_scale,
    remote_stop,
    startup,
    stop_latency,
    two_process,
)
from bench.figures import MS_PER_S, Floor, Outcome, Stats
from bench.figures import Figure as F  # noqa: N817 - one letter: the tables read as rows
from firmware_bridge.device.health import DeviceLimits
from firmware_bridge.device.link import HEARTBEAT_S, WATCHDOG_S
from tests.brokers import Mosquitto

TIER_NAMES = {"memory": "tier 1 (memory)", "bumble": "tier 2 (bumble)"}
LATENCY_MS = 5.0  # the one-way link latency of stop_latency's third row (full runs only)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    run: Callable[[bool], Outcome]  # quick → figures
    quick_limit_s: float  # a quick run is abandoned (as an error) after this many seconds
    full_limit_s: float  # likewise a full run

    def limit_s(self, quick: bool) -> float:
        return self.quick_limit_s if quick else self.full_limit_s


def _bounded(coro: Coroutine[Any, Any, Outcome], limit_s: float) -> Outcome:
    async def bounded() -> Outcome:
        return await asyncio.wait_for(coro, limit_s)

    return asyncio.run(bounded())


def _summary(result: dict[str, object], key: str) -> Stats:
    value = result[key]
    assert isinstance(value, dict), key
    return Stats.from_summary(value)


# -- stop latency: link.stop() vs a bare bleak write on the same tier and link ----------------


async def _stop_latency(quick: bool) -> Outcome:
    n = 30 if quick else 1000
    runs = [("memory", 0.0), ("bumble", 0.0), ("bumble", LATENCY_MS)]
    figures = []
    for tier, latency_ms in runs:
        r = await stop_latency.measure(tier, n, latency_ms)
        group = TIER_NAMES[tier] + (f", {latency_ms:g} ms one way" if latency_ms else "")
        to_device = Floor("bare bleak Write Request → device", _summary(r, "floor_write_to_device"))
        to_answer = Floor(
            "bare Write Request → device's answer", _summary(r, "floor_write_to_answer")
        )
        figures += [
            F(
                group,
                "link.stop() → motors at zero",
                _summary(r, "request_to_motors_zero"),
                to_device,
            ),
            F(group, "link.stop() → ack", _summary(r, "request_to_ack"), to_answer),
        ]
    return Outcome(figures)


# -- remote stop: through mosquitto vs a bare publish → receive on the same broker ------------


async def _remote_stop(quick: bool) -> Outcome:
    n, flood, flood_runs = (30, 2_000, 2) if quick else (1000, 20_000, 20)
    figures = []
    dropped = {}
    for tier in ("bumble", "memory"):
        r = await remote_stop.measure(n, tier, flood, flood_runs)
        group = TIER_NAMES[tier]
        broker = Floor("bare publish → plain subscriber (QoS 1)", _summary(r, "bare_broker"))
        link = Floor("link.stop() → motors at zero, no broker", _summary(r, "bare_link"))
        figures += [
            F(group, "remote stop: publish → motors at zero", _summary(r, "remote_stop"), broker),
            F(group, "remote stop, beside the link alone", _summary(r, "remote_stop"), link),
            F(
                group,
                f"remote stop after {flood:,} flooding messages",
                _summary(r, "remote_stop_after_flood"),
                broker,
            ),
        ]
        dropped[tier] = r["commands_dropped"]
    return Outcome(figures, {"flood": flood, "commands_dropped": dropped})


# -- fail-safes: against the settings they cannot beat, and a bare disconnect -----------------


async def _failsafe(quick: bool) -> Outcome:
    tier, n, silent_n = ("bumble", 2, 2) if quick else ("bumble", 10, 5)
    group = TIER_NAMES[tier]
    watchdog = Floor(
        "the device's watchdog setting", Stats.setting(WATCHDOG_S * MS_PER_S), "setting"
    )
    silence_s = DeviceLimits().silence_s
    silent = Floor(
        "the silence setting (3½ STATUS periods)", Stats.setting(silence_s * MS_PER_S), "setting"
    )
    bare = Floor(
        "bare bleak client's disconnect callback", Stats.of(await failsafe.bare_disconnect(tier, n))
    )
    return Outcome(
        [
            F(
                group,
                "controller dies → device at zero (from its last frame)",
                Stats.of(await failsafe.watchdog(tier, n)),
                watchdog,
            ),
            F(
                group,
                "device silent (link up) → `device_silent` latched",
                Stats.of(await failsafe.silence(tier, silent_n)),
                silent,
            ),
            F(
                group,
                "link drops → output latched off",
                Stats.of(await failsafe.link_loss(tier, n)),
                bare,
            ),
        ]
    )


# -- capacity: control-tick lateness vs a bare 20 Hz asyncio.sleep loop in the same process -----


async def _capacity(quick: bool) -> Outcome:
    counts, seconds = ([1, 10], 3.0) if quick else ([1, 10, 25, 50, 100], 15.0)
    broker = Mosquitto()
    broker.start()
    try:
        baseline = capacity.rss_mib()
        bare = Floor(
            "bare 20 Hz asyncio.sleep loop, same process",
            Stats.of(await capacity.bare_ticks(seconds)),
        )
        figures = []
        for count in counts:
            r = await capacity.measure(count, seconds, broker, baseline)
            stats = Stats(
                int(str(r["ticks"])),
                float(str(r["lateness_median_ms"])),
                float(str(r["lateness_p90_ms"])),
                float(str(r["lateness_p99_ms"])),
                float(str(r["lateness_max_ms"])),
            )
            notes = {
                k: r[k]
                for k in ("missed_pct", "cpu_pct_of_one_core", "cpu_ms_per_device_s", "rss_mib")
            }
            figures.append(F(f"{count} devices", "control tick lateness", stats, bare, notes=notes))
    finally:
        broker.close()
    return Outcome(figures, {"seconds_per_point": seconds})


# -- fleet scale: N sessions here, the simulators in another process ---------------------------


FLEET_COUNTS_FULL = [1, 10, 100, 250, 500, 1000]


async def _fleet_scale(quick: bool) -> Outcome:
    counts, seconds = ([1, 10], 3.0) if quick else (FLEET_COUNTS_FULL, 10.0)
    broker = Mosquitto()
    broker.start()
    try:
        baseline = capacity.rss_mib()
        ticks = Floor(
            "bare 20 Hz asyncio.sleep loop, same process",
            Stats.of(await capacity.bare_ticks(min(seconds, 5.0))),
        )
        figures, curve = [], []
        for count in counts:
            r = await fleet_scale.measure(count, seconds, broker, baseline)
            lateness = Stats(
                int(r["ticks"]),
                float(r["lateness_median_ms"]),
                float(r["lateness_p99_ms"]),
                float(r["lateness_p99_ms"]),
                float(r["lateness_max_ms"]),
            )
            notes = {
                k: r[k]
                for k in (
                    "missed_ticks",
                    "missed_pct",
                    "cpu_pct_of_one_core",
                    "cpu_ms_per_device_s",
                    "server_cpu_pct",
                    "rss_mib",
                    "rss_mib_per_device",
                    "stop_all_confirmed",
                )
            }
            group = f"{count} devices"
            figures.append(F(group, "control tick lateness", lateness, ticks, notes=notes))
            if r["stop_all"]:
                bare = Floor(
                    f"{count} bare Write Requests of a stop at once, same simulators",
                    Stats.of(r["floor_stop_all"]),
                )
                figures.append(
                    F(group, "stop-all → each zero confirmed", Stats.of(r["stop_all"]), bare)
                )
            curve.append({k: v for k, v in r.items() if k not in ("stop_all", "floor_stop_all")})
    finally:
        broker.close()
    return Outcome(figures, {"seconds_per_point": seconds, "curve": curve})


# -- the monitor at fleet size: messages folded vs a bare subscriber ----------------------------


async def _monitor_scale(quick: bool) -> Outcome:
    devices, seconds = (100, 2.0) if quick else (1000, 10.0)
    r = await monitor_scale.measure(devices, seconds)
    m, bare = r["monitor"], r["floor_bare_subscriber"]
    cpu = Floor(
        "bare aiomqtt subscriber, same stream: CPU per message",
        Stats.setting(float(bare["cpu_ms_per_message"])),  # one figure: total CPU / messages
    )
    notes = {
        "offered_per_s": m["offered_per_s"],
        "lost": m["lost"],
        "bare_lost": bare["sent"] - bare["received"],
        "summary_render_ms": m["summary_render_ms"],
        "rss_growth_mib": m["rss_growth_mib"],
    }
    figure = F(
        f"{devices} devices' telemetry",
        "monitor: CPU per message folded (parse + view)",
        Stats.setting(float(m["cpu_ms_per_message"])),
        cpu,
        notes=notes,
    )
    return Outcome([figure], r)


# -- two processes: kill one side, against the watchdog ----------------------------------------


def _two_process(quick: bool) -> Outcome:
    n, limit_s = (1, 150.0) if quick else (10, two_process.TIME_LIMIT_S)
    earliest = Floor(
        "watchdog minus heartbeat: the earliest zero after a kill",
        Stats.setting((WATCHDOG_S - HEARTBEAT_S) * MS_PER_S),
        "setting",
    )
    deadline = time.monotonic() + limit_s
    with tempfile.TemporaryDirectory(prefix="bench-two-process-") as tmp:
        to_zero, seen = two_process.kill_controllers(Path(tmp), n, deadline)
        exits = two_process.kill_simulators(Path(tmp), n, deadline)
    group = "two processes, TCP HCI"
    return Outcome(
        [
            F(group, "kill controller → device at zero (its record)", Stats.of(to_zero), earliest),
            F(group, "kill controller → zero read by a tailing process", Stats.of(seen), earliest),
            F(group, "kill simulator → controller process exited", Stats.of(exits), None),
        ]
    )


# -- described devices: link.stop() vs a bare bleak write of the same stop bytes --------------


async def _described_stop(quick: bool) -> Outcome:
    from firmware_bridge.devices import shipped  # noqa: PLC0415 - pydantic: this one only

    n = 5 if quick else 50  # a stop the device cannot confirm waits out the 1 s ack timeout
    figures = []
    for description in (d for d in shipped() if d.driver == "simple-write"):
        for tier in ("memory", "bumble"):
            r = await described_stop.measure(description, tier, n)
            bare = Floor(
                "bare bleak write of the same stop bytes", _summary(r, "floor_bare_bleak_write")
            )
            figures.append(
                F(
                    f"{description.id}, {TIER_NAMES[tier]}",
                    "link.stop() → motors at zero",
                    _summary(r, "stop_to_motors_zero"),
                    bare,
                )
            )
    return Outcome(figures)


# -- across a broker network: a stop published on B reaching a controller on A -----------------


async def _broker_network(quick: bool) -> Outcome:
    n, limit_s = (20, 60.0) if quick else (200, 600.0)
    r = await broker_network.measure(n, "bumble", limit_s, "a")
    group = "bridge on A (the controller's broker), tier 2"
    one_way = Floor("bare publish on B → receive on A", _summary(r, "bridge_b_to_a"))
    back = Floor("bare publish B → A → answer on B", _summary(r, "bridge_round_trip"))
    return Outcome(
        [
            F(
                group,
                "stop published on B → motors at zero",
                _summary(r, "stop_b_to_zero"),
                one_way,
            ),
            F(
                group,
                "stop published on B → its answer on B",
                _summary(r, "stop_b_to_answer"),
                back,
            ),
        ],
        {"bare_a_alone_ms": _summary(r, "bare_a").p50},
    )


# -- start-up: the CLI against a bare interpreter ----------------------------------------------


def _startup(quick: bool) -> Outcome:
    n = 3 if quick else 20
    times = startup.wall_times(n)
    floor = Floor(startup.FLOOR, Stats.of(times[startup.FLOOR]))
    figures = [
        F("wall time, spawn → exit", name, Stats.of(samples), floor)
        for name, samples in times.items()
        if name != startup.FLOOR
    ]
    imports = startup.import_times()
    top = [
        {"module": i.module, "cumulative_ms": i.cumulative_us / 1000, "self_ms": i.self_us / 1000}
        for i in startup.top_offenders(imports)
    ]
    total = imports[0].cumulative_us / 1000 if imports else None
    return Outcome(
        figures, {"import": startup.IMPORTED, "import_total_ms": total, "top_imports": top}
    )


def _async(
    run: Callable[[bool], Coroutine[Any, Any, Outcome]], name: str
) -> Callable[[bool], Outcome]:
    def call(quick: bool) -> Outcome:
        logging.getLogger().setLevel(logging.ERROR)  # every stop measured is logged by design
        return _bounded(run(quick), BY_NAME[name].limit_s(quick))

    return call


BENCHMARKS = (
    Benchmark("stop_latency", "Stop latency", _async(_stop_latency, "stop_latency"), 120, 1800),
    Benchmark("remote_stop", "Remote stop (MQTT)", _async(_remote_stop, "remote_stop"), 120, 1800),
    Benchmark("failsafe", "Fail-safe bounds", _async(_failsafe, "failsafe"), 120, 900),
    Benchmark("capacity", "Capacity", _async(_capacity, "capacity"), 120, 900),
    Benchmark("fleet_scale", "Fleet scale", _async(_fleet_scale, "fleet_scale"), 120, 1800),
    Benchmark(
        "monitor_scale", "Monitor at fleet size", _async(_monitor_scale, "monitor_scale"), 60, 300
    ),
    Benchmark("two_process", "Two processes", _two_process, 200, 1000),
    Benchmark("startup", "Start-up", _startup, 120, 600),
    Benchmark(
        "described_stop",
        "Stop on described devices",
        _async(_described_stop, "described_stop"),
        150,
        1500,
    ),
    Benchmark(
        "broker_network",
        "Across a broker network",
        _async(_broker_network, "broker_network"),
        120,
        900,
    ),
)
BY_NAME = {b.name: b for b in BENCHMARKS}
