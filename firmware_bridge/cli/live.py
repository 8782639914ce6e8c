"""The live session screen: rich's `Live`, redrawn in place, 12 lines that fit 80x24.

It reads the session as it is at each redraw (not the per-second sample), so a stop or a
pause shows within one redraw. Log lines and notable events print above it, never inside.
Its output goes through `ScreenWriter`, so a terminal that stops reading never stalls the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from types import TracebackType
from typing import IO, TYPE_CHECKING, TextIO, cast

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.text import Text

from firmware_bridge.cli.display import SOURCE_WORDS, bar, event_detail, mmss
from firmware_bridge.cli.keys import KEY_HELP
from firmware_bridge.cli.screen_writer import ScreenWriter
from firmware_bridge.device import LinkState, StopReason
from firmware_bridge.record import Event, Sample, SessionRecord
from profiles.model import ZONES

if TYPE_CHECKING:
    from firmware_bridge.runner import Session

_LOGGER = logging.getLogger(__name__)

REFRESH_S = 0.2  # real seconds between redraws: a key's effect shows at once, the loop stays free
SAID_FOR_S = 5.0  # real seconds a key's answer stays on screen
DEMO_TITLE = "DEMO · simulated massager — no device is moving"
MIN_BAR, MAX_BAR = 6, 24  # zone bar width in columns, whatever the terminal's width
# Printed above the screen as they happen; the rest is on the screen itself.
_ABOVE = frozenset(
    {"link_lost", "reconnected", "fault", "nack", "button", "limit", "device_silent"}
)
_LINK_WORDS = {
    LinkState.READY: "connected",
    LinkState.CONNECTING: "connecting",
    LinkState.RECONNECTING: "reconnecting",
    LinkState.LINK_LOST: "link lost",
    LinkState.DISCONNECTED: "link lost, gave up reconnecting",
    LinkState.CLOSED: "closed",
}


def screen_console(stream: TextIO) -> Console | None:
    """A console for the live screen on `stream`, or None when it is not a usable terminal."""
    if not stream.isatty():  # whatever FORCE_COLOR says: no screen in a pipe or a log
        return None
    console = Console(file=stream, highlight=False)
    if not console.is_terminal or console.is_dumb_terminal:
        return None
    return console


class LiveScreen:
    """`with LiveScreen(...) as screen:` while the session runs; `await screen.refreshing()`."""

    def __init__(self, console: Console, session: Session, *, demo: bool, keys: bool) -> None:
        self.console = console
        self.session = session
        self.demo = demo
        self.keys = keys  # the one-key input is on (else only Ctrl-C stops)
        self.record: SessionRecord | None = None  # set by finish(): the last frame says how
        self._said = ""
        self._said_at = 0.0
        self._redraw_due = False
        self._open = False  # between __enter__ and __exit__: a late redraw is dropped
        self._live = Live(
            console=console,
            auto_refresh=False,
            transient=False,
            # Stray writes print above the screen; stdout is left alone when it is not the
            # screen's (it carries --json's one document).
            redirect_stdout=console.file is sys.stdout,
            redirect_stderr=True,
        )
        self._logs = _LogsAbove(console)
        self._stream = console.file
        self._writer: ScreenWriter | None = None

    def __enter__(self) -> LiveScreen:
        self._writer = ScreenWriter(self._stream)
        # From here on the loop never blocks on the terminal (a TextIOBase is an IO[str]).
        self.console.file = cast(IO[str], self._writer)
        self._logs.__enter__()
        try:
            self._live.start(refresh=True)
        except BaseException:
            self._logs.__exit__(None, None, None)
            self._close_writer()
            raise
        self._open = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        try:
            self._live.stop()  # the last frame stays on the terminal; the cursor comes back
        finally:
            self._logs.__exit__(kind, exc, tb)
            self._close_writer()

    def _close_writer(self) -> None:
        """The last frame reaches the terminal before anything else is printed after it."""
        if self._writer is not None:
            self._writer.drain()
            self.console.file = self._stream
            self._writer = None

    async def refreshing(self) -> None:
        """Redraw until cancelled. A screen that cannot draw stops the session (S9)."""
        while True:
            try:
                self.refresh()
            except Exception as exc:
                _LOGGER.exception("live screen failed; stopping the session")
                self.session.request_stop(StopReason.FAULT)
                raise RuntimeError("live screen failed") from exc
            await asyncio.sleep(REFRESH_S)

    def refresh(self, *, even_if_behind: bool = False) -> None:
        """Draw the session as it is now; skipped while the terminal has not taken the last
        frame yet (Ctrl-S, a stalled connection), so frames never pile up."""
        if self._writer is not None and self._writer.busy and not even_if_behind:
            return
        self._live.update(self.render(), refresh=True)

    def refresh_soon(self) -> None:
        """Redraw for a key or an event once the loop is free: what the key or event set in
        motion (a stop's task, a pause's zero write) was scheduled first and goes first."""
        if not self._redraw_due:
            self._redraw_due = True
            asyncio.get_running_loop().call_soon(self._redraw)

    def _redraw(self, *, even_if_behind: bool = False) -> None:
        self._redraw_due = False
        if not self._open:
            return
        try:
            self.refresh(even_if_behind=even_if_behind)
        except Exception:  # never in the caller's way: refreshing() reports it and stops
            _LOGGER.debug("live screen: redraw failed", exc_info=True)

    def said(self, text: str) -> None:
        """A key's answer, shown on the status line for a few seconds."""
        self._said, self._said_at = text, time.monotonic()
        self.refresh_soon()

    def event(self, event: Event) -> None:
        """Notable events get a line above the screen, so the terminal keeps their history."""
        if event.type in _ABOVE:
            line = f"{mmss(event.t)} {event.type.replace('_', ' ')}: {event_detail(event)}"
            try:
                self.console.print(Text(line), overflow="fold")
            except Exception:  # the session's event hook must not fail for the terminal's sake
                _LOGGER.debug("live screen: event line lost", exc_info=True)
        if event.type in {"stop", "paused", "resumed", "cap_lowered", "discomfort"}:
            self.refresh_soon()

    def finish(self, record: SessionRecord) -> None:
        """The last frame: how the session ended and whether the device confirmed zero."""
        self.record = record
        self._redraw(even_if_behind=True)  # now: the screen closes next, leaving this frame

    # -- drawing ---------------------------------------------------------------------------

    def render(self) -> RenderableType:
        sample = self.session.snapshot()
        width = max(20, self.console.width - 4)  # inside the border and its padding
        rows: list[RenderableType] = [
            self._where(),
            self._progress(sample, width),
            self._zones(sample, width),
            self._limits(),
            self._rating(),
            self._device(sample),
            self._status(),
        ]
        title = DEMO_TITLE if self.demo else f"massager · {self.session.link.transport.name}"
        return Panel(
            Group(*rows),
            title=Text(title, style="bold yellow" if self.demo else "bold"),
            title_align="left",
            subtitle=Text(KEY_HELP if self.keys else "Ctrl-C stops", style="dim"),
            subtitle_align="left",
            box=box.ROUNDED,
            padding=(0, 1),
        )

    def _where(self) -> Text:
        session = self.session
        count = len(session.timeline.segments)
        index = session.segment_index
        number = f"{index + 1}" if index >= 0 else "-"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(session.profile.name, style="bold")
        text.append(f" · segment {number} of {count} · {session.segment or 'starting'}")
        return text

    def _progress(self, sample: Sample, width: int) -> Text:
        duration = self.session.timeline.duration_s
        done = min(1.0, self.session.profile_s / duration) if duration else 0.0
        words = f" {done:4.0%}  elapsed {mmss(sample.elapsed_s)} · left {mmss(sample.remaining_s)}"
        return Text(bar(done, max(MIN_BAR, width - len(words))) + words, no_wrap=True)

    def _zones(self, sample: Sample, width: int) -> Text:
        """Commanded (sent) beside applied (the device's own report) for every zone."""
        link = self.session.link
        caps = link.capabilities
        max_level = caps.max_level if caps else 1
        applied = [level / max_level for level in link.applied]
        names = list(ZONES) if len(sample.zones) == len(ZONES) else []
        bar_width = max(MIN_BAR, min(MAX_BAR, (width - 12 - 2 * 6) // 2))
        column = bar_width + 5
        stale = " (stale)" if sample.stale else ""
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{'zone':10}{'commanded':{column}}  applied (device){stale}", style="bold")
        for zone, commanded in enumerate(sample.zones):
            name = names[zone] if names else f"zone {zone + 1}"
            text.append(f"\n{name:10}{bar(commanded, bar_width)} {commanded:4.0%}  ")
            if zone < len(applied):
                shown = f"{bar(applied[zone], bar_width)} {applied[zone]:4.0%}"
            else:
                shown = "?"  # the device has not reported its levels yet
            text.append(shown, style="dim" if sample.stale else "")
        return text

    def _limits(self) -> Text:
        governor = self.session.governor
        start_cap = self.session.settings.cap
        if governor is None:
            return Text(f"cap {start_cap}/10 · starting")
        lowered = f" (lowered from {start_cap})" if governor.cap < start_cap else ""
        if governor.stopped:
            mode = "stopped"
        elif governor.paused:
            mode = "paused"
        elif governor.frozen:
            mode = "frozen after a rating of 6 or more: no more increases"
        elif governor.holding:
            mode = "holding after a rating of 4-5: no increases"
        elif governor.envelope < governor.ceiling - 1e-9:
            mode = "rising gently"
        else:
            mode = "at the ceiling"
        text = f"cap {governor.cap}/10{lowered} · ceiling {governor.ceiling:.0%} · {mode}"
        return Text(text, no_wrap=True, overflow="ellipsis")

    def _rating(self) -> Text:
        record = self.session.record
        if not record.ratings:
            return Text("no rating yet · press 0-9 (x = 10) to rate discomfort", style="dim")
        t, nrs = record.ratings[-1]
        who = SOURCE_WORDS[record.rating_source(len(record.ratings) - 1)]
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"last rating {nrs}", style="bold")
        text.append(f" by {who} at {mmss(t)}")
        yours = [
            (t, n) for i, (t, n) in enumerate(record.ratings) if record.rating_source(i) == "person"
        ]
        if yours and who != SOURCE_WORDS["person"]:  # the person's own last word stays in view
            text.append(f" · yours: {yours[-1][1]} at {mmss(yours[-1][0])}")
        elif len(record.ratings) > 1:
            before = record.ratings[-2][1]
            who = SOURCE_WORDS[record.rating_source(len(record.ratings) - 2)]
            text.append(f" · before: {before} by {who}")
        return text

    def _device(self, sample: Sample) -> Text:
        link = self.session.link
        state = _LINK_WORDS.get(link.state, str(link.state))
        if link.state == LinkState.READY and sample.stale:
            state = "stale (no STATUS from the device)"
        battery = "?" if sample.battery is None else f"{sample.battery}%"
        heat = "" if sample.temperature_c is None else f" · contact {sample.temperature_c:.1f} °C"
        return Text(f"battery {battery}{heat} · link {state}", no_wrap=True, overflow="ellipsis")

    def _status(self) -> Text:
        governor, record = self.session.governor, self.record
        text = Text(no_wrap=True, overflow="ellipsis")
        if record is not None and record.stop_reason is not None:
            word = "COMPLETED" if record.stop_reason == StopReason.COMPLETED else "STOPPED"
            text.append(word, style="bold")
            text.append(f" ({record.stop_reason.value.replace('_', ' ')})")
            if record.stop_confirmed:
                text.append(" · the device confirmed zero output")
            elif record.stop_confirmed is False:
                text.append(" · zero NOT confirmed: the device's watchdog stops it")
            return text
        if governor is not None and governor.stopped:
            text.append("STOPPING", style="bold red")
            text.append(" · zero sent to the device")
        elif governor is not None and governor.paused:
            text.append("PAUSED", style="bold yellow")
            text.append(" · output at zero · the session limit keeps counting")
        else:
            text.append("RUNNING", style="bold green")
        if self._said and time.monotonic() - self._said_at < SAID_FOR_S:
            text.append(f" · {self._said}")
        return text


class _LogsAbove:
    """The root logger prints through the screen's console while it is up (above the view)."""

    def __init__(self, console: Console) -> None:
        self.handler = RichHandler(
            console=console, show_time=False, show_path=False, markup=False, rich_tracebacks=False
        )
        self.handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self._saved: list[logging.Handler] = []

    def __enter__(self) -> None:
        root = logging.getLogger()
        self._saved = list(root.handlers)
        for handler in self._saved:
            root.removeHandler(handler)
        root.addHandler(self.handler)

    def __exit__(self, *exc_info: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for handler in self._saved:
            root.addHandler(handler)
