"""`python -m bench` works end to end on its cheapest benchmark, into a temp dir: results.json has
every figure beside its floor and ratio, the README's tables re-render idempotently and leave
the prose alone, and a plot is drawn. The numbers themselves are not asserted (no thresholds).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.figures import Figure, Floor, Stats
from bench.report import update_readme

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_README = ROOT / "bench" / "README.md"
CHEAP = "startup"  # 3 runs of 3 interpreters and one importtime: ~10 s here, no broker, no radio
RUN_TIMEOUT_S = 50.0  # under pytest's 60 s per test, with room for a loaded CI runner
STATS_KEYS = {"n", "p50", "p90", "p99", "max"}


def _block(text: str, name: str) -> str:
    found = re.search(f"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", text, re.DOTALL)
    assert found is not None, f"no markers for {name}"
    return found.group(1)


def _outside(text: str, name: str) -> str:
    return text.replace(_block(text, name), "")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    committed = COMMITTED_README.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", CHEAP, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert COMMITTED_README.read_text() == committed  # --out: the repository's copy is untouched
    return out


def test_results_json_has_every_figure_beside_its_floor(quick_run: Path) -> None:
    results: dict[str, Any] = json.loads((quick_run / "results.json").read_text())
    assert results["mode"] == "quick"
    assert {"cpu_count", "python", "platform", "versions"} <= results["machine"].keys()
    assert {"bleak", "bumble", "aiomqtt", "mosquitto"} <= results["machine"]["versions"].keys()
    assert list(results["benchmarks"]) == [CHEAP]
    bench = results["benchmarks"][CHEAP]
    assert bench["mode"] == "quick"
    assert bench["figures"]
    for figure in bench["figures"]:
        assert figure.keys() >= STATS_KEYS
        assert figure["unit"] == "ms"
        assert figure["p50"] <= figure["p99"] <= figure["max"]
        assert figure["floor"]["kind"] == "measured"
        assert figure["floor"].keys() >= STATS_KEYS
        assert figure["ratio"]["p50"] == pytest.approx(figure["p50"] / figure["floor"]["p50"], 1e-2)
        assert set(figure["ratio"]) == {"p50", "p99"}
    top = bench["extra"]["top_imports"]
    assert len(top) == 5
    assert [i["cumulative_ms"] for i in top] == sorted(
        (i["cumulative_ms"] for i in top), reverse=True
    )
    assert (quick_run / f"{CHEAP}.png").stat().st_size > 0


def test_the_readme_regenerates_idempotently_and_keeps_its_prose(quick_run: Path) -> None:
    results = json.loads((quick_run / "results.json").read_text())
    rendered = (quick_run / "README.md").read_text()
    assert update_readme(rendered, results) == rendered  # a second render changes nothing
    committed = COMMITTED_README.read_text()
    assert _outside(rendered, CHEAP) == _outside(committed, CHEAP)  # only the block changed
    block = _block(rendered, CHEAP)
    assert "quick run" in block
    for figure in results["benchmarks"][CHEAP]["figures"]:
        assert figure["label"] in block


def test_a_single_sample_and_a_setting_floor() -> None:
    one = Stats.of([0.002])
    assert (one.n, one.p50, one.p99, one.max) == (1, 2.0, 2.0, 2.0)
    figure = Figure("g", "watchdog", one, Floor("setting", Stats.setting(1.0), "setting"))
    assert figure.ratio() == {"p50": 2.0, "p99": 2.0}
    assert Figure("g", "no floor", one, None).ratio() is None
    with pytest.raises(ValueError, match="no samples"):
        Stats.of([])
