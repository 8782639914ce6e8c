"""Device descriptions: how to find a model and how to drive it, as data (sans-IO).

A description says which advertisements are this model (name globs, service UUIDs,
manufacturer data) and how an intensity reaches its motors: our framed protocol v1, or a
"simple write" family that writes a level to one characteristic as bytes or text. Each
description carries byte-level cases (`[[case]]`: these levels write exactly these bytes), and
parsing checks them against the encoder, so a description with a mistake never loads.

The same object drives the controller (`writes_for`) and the simulator's impersonation of the
model (`levels_from`), both pure; files are read in `firmware_bridge.devices`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from string import Formatter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from firmware_bridge.errors import MassagerError

Zone = Literal["heel", "arch", "forefoot"]
ZONE_NAMES: tuple[Zone, ...] = ("heel", "arch", "forefoot")  # the zones profiles play, in order
WATCHDOG_MAX_S = 3.0  # S4: a device timeout longer than this is no dead-man (failsafe none)
SMALLEST_WRITE_BYTES = 20  # ATT MTU 23 minus 3: every BLE link carries a write this long
MAX_TEMPLATE_CHARS = 40  # a text command template; what it writes must fit 20 bytes anyway
MAX_MOTORS = 16  # more motors than any foot device has; keeps "motor" within one byte
MAX_GAP_MS = 500  # a device needing more between writes cannot be stopped promptly
SCHEMA = 1

Byte = Annotated[int, Field(ge=0, le=255)]
Uuid = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
LayoutItem = Byte | Literal["level", "levels", "motor", "motor0"]


class DescriptionError(MassagerError, ValueError):
    """A description could not be loaded; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Match(_Strict):
    """Which advertisements are this model: every rule given must fit (at least one is given).

    All, not any: a generic service UUID (0xFFF0, 0xFFE0) is on thousands of gadgets, so a
    match on it alone would take an LED strip for a massager."""

    names: tuple[str, ...] = ()  # fnmatch globs on the advertised local name
    services: tuple[Uuid, ...] = ()  # any of these service UUIDs advertised
    manufacturer_id: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    manufacturer_prefix: str = ""  # hex the manufacturer data starts with (with the id above)

    @field_validator("services", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        ok = isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)
        return tuple(v.lower() for v in value) if ok else value

    @field_validator("manufacturer_prefix")
    @classmethod
    def _hex(cls, value: str) -> str:
        try:
            bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"must be hex digits, got {value[:40]!r}") from None
        return value.lower()

    @property
    def empty(self) -> bool:
        return not (self.names or self.services or self.manufacturer_id is not None)

    def fits(
        self, name: str | None, services: Sequence[str], manufacturer: Mapping[int, bytes]
    ) -> bool:
        if self.empty:
            return False
        if self.names and not (name and any(fnmatch.fnmatchcase(name, g) for g in self.names)):
            return False
        if self.services and not {s.lower() for s in services} & set(self.services):
            return False
        if self.manufacturer_id is not None:
            data = manufacturer.get(self.manufacturer_id)
            return data is not None and data.startswith(bytes.fromhex(self.manufacturer_prefix))
        return True


class Gatt(_Strict):
    service: Uuid
    write: Uuid  # the characteristic every level is written to
    battery: bool = False  # the standard Battery Service is there (read + notify)
    pairing: bool = False  # the device must be bonded before it accepts writes

    @field_validator("service", "write", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Output(_Strict):
    max_level: Annotated[int, Field(ge=1, le=255)]  # levels 0..max_level, as the device counts
    motors: Annotated[tuple[tuple[Zone, ...], ...], Field(max_length=MAX_MOTORS)] = (ZONE_NAMES,)
    encoding: Literal["bytes", "text"]
    command: Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)] = ""  # {level}, {motor} (1-)
    layout: tuple[LayoutItem, ...] = ()  # bytes: constants and level/levels/motor/motor0
    per_motor: bool = True  # one write per motor (else one write carries every motor)
    with_response: bool = True  # Write Requests: the device's ATT layer acknowledges each
    stop: tuple[str, ...] = ()  # writes that stop it (text, or hex for bytes); default: zeros


class Timing(_Strict):
    min_gap_ms: Annotated[float, Field(ge=0, le=MAX_GAP_MS)] = 0.0  # closer writes are lost
    keepalive_s: Annotated[float, Field(ge=0, le=60)] = 0.0  # re-send levels this often (0: no)
    watchdog_s: Annotated[float, Field(ge=0, le=3600)] = 0.0  # device zeroes itself (0: never)


class Case(_Strict):
    levels: tuple[Annotated[int, Field(ge=0, le=255)], ...]  # per motor, device levels
    writes: tuple[str, ...]  # exactly these writes, in order (text, or hex for bytes)


class Description(_Strict):
    """One model: how to find it, how to drive it, what its failsafe is."""

    schema_: Literal[1] = Field(1, alias="schema")  # SCHEMA: the only version there is
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    name: Annotated[str, Field(min_length=1, max_length=80)]
    driver: Literal["protocol-v1", "simple-write"]
    notes: str = ""
    match: Match
    gatt: Gatt | None = None
    output: Output | None = None
    timing: Timing = Timing()
    case: tuple[Case, ...] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    # -- what the controller needs to know ----------------------------------------------------

    @property
    def failsafe(self) -> Literal["watchdog", "none"]:
        """`watchdog` when the device zeroes itself within WATCHDOG_MAX_S of silence (S4)."""
        if self.driver == "protocol-v1":
            return "watchdog"  # protocol v1 negotiates it; the link checks the capabilities
        return "watchdog" if 0 < self.timing.watchdog_s <= WATCHDOG_MAX_S else "none"

    @property
    def pairing(self) -> bool:
        return self.gatt is not None and self.gatt.pairing

    @property
    def service_uuid(self) -> str | None:
        return self.gatt.service if self.gatt else None

    @property
    def motors(self) -> int:
        return len(self.output.motors) if self.output else len(ZONE_NAMES)

    def fits(
        self, name: str | None, services: Sequence[str], manufacturer: Mapping[int, bytes]
    ) -> bool:
        return self.match.fits(name, services, manufacturer)

    # -- encoding (controller) and decoding (simulator) ---------------------------------------

    def motor_levels(self, zone_levels: Sequence[int]) -> tuple[int, ...]:
        """Zone levels (heel, arch, forefoot) → one level per motor: the highest of its zones."""
        out = self._output()
        return tuple(
            max(zone_levels[ZONE_NAMES.index(zone)] for zone in zones) for zones in out.motors
        )

    def writes_for(self, levels: Sequence[int]) -> list[bytes]:
        """The writes that set these per-motor levels, in order."""
        out = self._output()
        if len(levels) != len(out.motors) or not all(0 <= v <= out.max_level for v in levels):
            raise ValueError(f"{self.id}: levels {tuple(levels)} for {len(out.motors)} motors")
        if out.per_motor:
            return [self._one(out, motor, level, levels) for motor, level in enumerate(levels)]
        return [self._one(out, 0, levels[0], levels)]

    def stop_writes(self) -> list[bytes]:
        """The writes that stop every motor."""
        out = self._output()
        if out.stop:
            return [self._spelled(w) for w in out.stop]
        return self.writes_for((0,) * len(out.motors))

    def levels_from(self, data: bytes) -> dict[int, int] | None:
        """What a write of `data` asks of each motor (index → level), None if it means nothing.

        The simulator's side of `writes_for`: a model of what the device firmware parses.
        """
        out = self._output()
        if data in {self._spelled(w) for w in out.stop}:
            return dict.fromkeys(range(len(out.motors)), 0)
        if out.encoding == "text":
            return self._text_levels(out, data)
        return self._byte_levels(out, data)

    # -- internals ---------------------------------------------------------------------------

    def _output(self) -> Output:
        if self.output is None:
            raise ValueError(f"{self.id}: a {self.driver} description has no [output]")
        return self.output

    def _spelled(self, write: str) -> bytes:
        out = self._output()
        return write.encode("ascii") if out.encoding == "text" else bytes.fromhex(write)

    @staticmethod
    def _one(out: Output, motor: int, level: int, levels: Sequence[int]) -> bytes:
        if out.encoding == "text":
            return out.command.format(level=level, motor=motor + 1).encode("ascii")
        data = bytearray()
        for item in out.layout:
            match item:
                case "level":
                    data.append(level)
                case "levels":
                    data.extend(levels)
                case "motor":
                    data.append(motor + 1)
                case "motor0":
                    data.append(motor)
                case int():
                    data.append(item)
        return bytes(data)

    def _text_levels(self, out: Output, data: bytes) -> dict[int, int] | None:
        pattern = re.escape(out.command).replace(r"\{level\}", r"(?P<level>\d{1,3})")
        pattern = pattern.replace(r"\{motor\}", r"(?P<motor>\d{1,2})")
        found = re.fullmatch(pattern.encode("ascii"), data)
        if found is None:
            return None
        motor = int(found.group("motor")) - 1 if "{motor}" in out.command else 0
        level = int(found.group("level"))
        if not 0 <= motor < len(out.motors) or level > out.max_level:
            return None
        return {motor: level}

    def _byte_levels(self, out: Output, data: bytes) -> dict[int, int] | None:
        motors = len(out.motors)
        size = sum(motors if item == "levels" else 1 for item in out.layout)
        if len(data) != size:
            return None
        found: dict[int, int] = {}
        motor, level, index = 0, None, 0
        for item in out.layout:
            match item:
                case "levels":
                    found.update(enumerate(data[index : index + motors]))
                    index += motors
                    continue
                case "level":
                    level = data[index]
                case "motor":
                    motor = data[index] - 1
                case "motor0":
                    motor = data[index]
                case int() if data[index] != item:
                    return None
            index += 1
        if level is not None:
            found[motor] = level
        if not all(0 <= m < motors and v <= out.max_level for m, v in found.items()):
            return None
        return found or None

    def check(self) -> list[str]:
        """Problems that need more than one field to see (one line each, naming the field)."""
        if self.match.empty:
            return ["match: give names, services or manufacturer_id (every one given must fit)"]
        if self.driver == "protocol-v1":
            extra = [f for f in ("gatt", "output", "case") if getattr(self, f)]
            return [f"{f}: a protocol-v1 description takes only [match]" for f in extra]
        problems = [
            f"{f}: a simple-write description needs [{f}]"
            for f in ("gatt", "output")
            if getattr(self, f) is None
        ]
        if problems:
            return problems
        out, timing = self._output(), self.timing
        problems += self._check_encoding(out)
        if not out.motors or any(not zones for zones in out.motors):
            problems.append("output.motors: each motor plays at least one zone")
        if timing.watchdog_s and not 0 < timing.keepalive_s < timing.watchdog_s:
            problems.append(
                f"timing.keepalive_s: must be above 0 and below timing.watchdog_s "
                f"({timing.watchdog_s:g} s), or the device stops itself mid-session"
            )
        if problems:
            return problems
        biggest = max(len(w) for w in self.writes_for((out.max_level,) * len(out.motors)))
        if biggest > SMALLEST_WRITE_BYTES:
            problems.append(
                f"output: a write of {biggest} bytes; at most {SMALLEST_WRITE_BYTES} fit every link"
            )
        problems += self._check_cases(out)
        return problems

    def _check_encoding(self, out: Output) -> list[str]:
        several = len(out.motors) > 1
        if out.encoding == "text":
            if out.layout:
                return ['output.layout: is for encoding = "bytes"; text uses output.command']
            if not out.command.isascii():
                return ["output.command: an ASCII template with {level} (and {motor})"]
            problem = _template_problem(out.command)
            if problem:
                return [f"output.command: {problem}"]
            if several and not (out.per_motor and "{motor}" in out.command):
                return ["output.command: several motors need per_motor = true and {motor}"]
        else:
            if out.command:
                return ['output.command: is for encoding = "text"; bytes use output.layout']
            kinds = {item for item in out.layout if isinstance(item, str)}
            if not kinds & {"level", "levels"}:
                return ['output.layout: needs "level" or "levels"']
            if out.per_motor and several and not kinds & {"motor", "motor0"}:
                return ['output.layout: several motors written one by one need "motor"']
            if not out.per_motor and several and "levels" not in kinds:
                return ['output.layout: one write for several motors needs "levels"']
        for index, write in enumerate(out.stop):
            try:
                self._spelled(write)
            except (ValueError, UnicodeEncodeError):
                return [f"output.stop[{index}]: not {'ASCII' if out.encoding == 'text' else 'hex'}"]
        return []

    def _check_cases(self, out: Output) -> list[str]:
        problems = []
        if not self.case:
            problems.append("case: at least one [[case]], including all motors at zero")
        if not any(not any(case.levels) for case in self.case):
            problems.append("case: one [[case]] must set every motor to 0 (the stop)")
        for index, case in enumerate(self.case):
            where = f"case[{index}]"
            if len(case.levels) != len(out.motors) or max(case.levels) > out.max_level:
                problems.append(
                    f"{where}.levels: {len(out.motors)} levels of 0-{out.max_level} expected"
                )
                continue
            try:
                expected = [self._spelled(w) for w in case.writes]
            except (ValueError, UnicodeEncodeError):
                problems.append(
                    f"{where}.writes: not {(out.encoding == 'text' and 'ASCII') or 'hex'}"
                )
                continue
            actual = self.writes_for(case.levels)
            if actual != expected:
                shown = [w.decode("ascii") if out.encoding == "text" else w.hex() for w in actual]
                problems.append(f"{where}.writes: the description encodes these as {shown}")
                continue
            decoded: dict[int, int] = {}
            for write in actual:
                decoded |= self.levels_from(write) or {}
            if decoded != dict(enumerate(case.levels)):
                problems.append(f"{where}.writes: do not read back as {list(case.levels)}")
        return problems


def _template_problem(command: str) -> str | None:
    """Why `command` is not a plain template of {level} and {motor}, each at most once.

    Only bare fields: a format spec or attribute (`{motor:>300000000}`, `{level.x}`) would let a
    file ask for gigabytes or run arbitrary `__format__` code."""
    try:
        parsed = [
            (f, spec, conv) for _, f, spec, conv in Formatter().parse(command) if f is not None
        ]
    except ValueError as exc:  # an unmatched brace
        return f"not a template ({exc})"
    fields = [field for field, _, _ in parsed]
    if any(spec or conv for _, spec, conv in parsed):
        return "only bare {level} and {motor}: no format spec or conversion"
    if any(field not in {"level", "motor"} for field in fields):
        return "only {level} and {motor} may be used"
    if len(fields) != len(set(fields)):
        return "each of {level} and {motor} at most once"
    if "level" not in fields:
        return "an ASCII template with {level} (and {motor})"
    return None


def parse_description(data: Mapping[str, Any], source: str) -> Description:
    """Validate parsed TOML data; every problem is one line naming the field."""
    try:
        description = Description.model_validate(_tupled(data))
    except ValidationError as exc:
        raise DescriptionError(source, _problems(exc)) from exc
    except RecursionError as exc:
        raise DescriptionError(source, ["nested too deeply"]) from exc.with_traceback(None)
    try:
        problems = description.check()
    except Exception as exc:  # a check must never become a traceback: name what could not be
        raise DescriptionError(source, [f"cannot be checked: {type(exc).__name__}: {exc}"]) from exc
    if problems:
        raise DescriptionError(source, problems)
    return description


def _tupled(value: Any, depth: int = 0) -> Any:
    """TOML arrays as tuples (the strict models hold tuples); bounded depth."""
    if depth > 8:
        raise RecursionError
    if isinstance(value, list):
        return tuple(_tupled(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _tupled(v, depth + 1) for k, v in value.items()}
    return value


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(
            f"[{p}]" if isinstance(p, int) else str(p) for p in error["loc"] if p != "schema_"
        ).replace(".[", "[")
        where = where.replace("schema_", "schema") or "(description)"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if error["type"] in {"extra_forbidden"}:
            message = "unknown field"
        elif error["type"] == "missing":
            message = "missing"
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            message = f"{message} (got {str(value)[:40]!r})"
        if not where.isprintable():
            where = repr(where)
        lines.append(f"{where}: {message[0].lower()}{message[1:]}")
    return lines
