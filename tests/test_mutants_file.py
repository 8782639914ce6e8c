"""The mutants list stays in step with the code: each mutant's text occurs exactly once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = tomllib.loads((ROOT / "tests" / "mutants.toml").read_text(encoding="utf-8"))["mutant"]
RULES = {f"S{n}" for n in range(1, 12)}  # S12 (the person's course) is not built yet


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m["id"] for m in MUTANTS])
def test_each_mutant_finds_its_text_exactly_once(mutant: dict[str, object]) -> None:
    source = (ROOT / str(mutant["file"])).read_text(encoding="utf-8")
    assert source.count(str(mutant["find"])) == 1
    assert mutant["find"] != mutant["replace"]
    tests = mutant["tests"]
    assert isinstance(tests, list)
    assert tests
    for test in tests:
        assert (ROOT / str(test).split("::")[0]).is_file(), test


def test_every_safety_rule_has_a_mutant() -> None:
    assert {str(m["rule"]) for m in MUTANTS} >= RULES


def test_ids_are_unique() -> None:
    ids = [m["id"] for m in MUTANTS]
    assert len(ids) == len(set(ids))
