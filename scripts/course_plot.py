"""Draw docs/img/course-21-days.png: the 21-day simulated course of tests/person/course21.py.

python scripts/course_plot.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_bridge.cli.person import plan_for  # noqa: E402 - after the path is set
from firmware_bridge.report import draw_course  # noqa: E402
from firmware_bridge.store import Store  # noqa: E402
from tests.person.course21 import CAP, run_course  # noqa: E402

OUT = ROOT / "docs" / "img" / "course-21-days.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        course = asyncio.run(run_course(data))
        with Store.open(data / "history.sqlite3") as store:
            end = dt.datetime.combine(course.played[-1].day, dt.time(20), dt.UTC)
            plan = plan_for(store, "ana", device="simulator", cap=CAP, now=end)
            draw_course("ana (simulated, 21 days)", plan, course.sessions, OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
