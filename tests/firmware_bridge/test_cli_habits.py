"""The command line's habits: --version, bare `massager`, help, completion, shared flags."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from firmware_bridge.cli import build_parser, main
from firmware_bridge.cli.completion import SHELLS

VERSION = metadata.version("firmware-bridge")
BROKER_COMMANDS = ("run", "monitor", "stop", "doctor")


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own config.toml and MASSAGER_* settings never reach these tests."""
    monkeypatch.setenv("MASSAGER_CONFIG", str(tmp_path / "absent.toml"))
    for name in list(os.environ):
        if name.startswith("MASSAGER_") and name not in {"MASSAGER_CONFIG", "MASSAGER_DATA_DIR"}:
            monkeypatch.delenv(name)


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def massager(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=60,
        check=False,
    )


# ---- version


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out == f"massager {VERSION}\n"
    assert err == ""


def test_version_command_lists_the_stack_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(" ", 1)[0] for line in lines]
    assert names == [
        "firmware-bridge", "python", "bleak", "bleak-retry-connector", "bumble", "aiomqtt",
        "amqtt", "rich", "pydantic", "platform",
    ]  # fmt: skip
    found = dict(line.split(" ", 1) for line in lines)
    assert found["firmware-bridge"] == VERSION
    assert found["bleak"] == metadata.version("bleak")
    assert found["python"].startswith(platform.python_version())
    assert found["platform"] == platform.platform()


def test_version_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["firmware-bridge"] == VERSION
    assert found["bumble"] == metadata.version("bumble")
    assert {"python", "platform", "aiomqtt", "amqtt", "rich", "pydantic"} <= found.keys()


# ---- no command, command groups


@pytest.mark.parametrize("argv", [[], ["-v"]], ids=["bare", "verbose-only"])
def test_no_command_prints_the_help_on_stdout_and_exits_0(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: massager")
    for command in ("run", "profiles", "monitor", "stop", "doctor", "config", "completion"):
        assert f"    {command} " in out
    assert err == ""


def test_bare_massager_as_a_process_exits_0() -> None:
    done = massager()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: massager")
    assert "Exit codes:" in done.stdout


@pytest.mark.parametrize("group", ["profiles", "config"])
def test_a_command_group_alone_prints_its_help(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code([group]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: massager {group}")
    assert "Examples:" in out


def test_mistakes_stay_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["completion", "tcsh"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "invalid choice: 'tcsh'" in err


# ---- help: description, examples that parse, exit codes


def parsers(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ("massager",)
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield " ".join(words), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*words, name))


ALL = list(parsers(build_parser()))
SHELL_OPERATORS = {";", "|", ">", ">>", "&&", "||", "&", ")"}


def section(text: str, title: str) -> list[str]:
    """The indented lines under `title:` up to the next blank line."""
    lines = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [line for line in lines if line.strip()]


def example_argv(line: str) -> list[str] | None:
    """The words after `massager` in a shell line, up to a pipe, redirect or `;`."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    if "massager" not in words:
        return None  # e.g. "$EDITOR" "$(massager config path)": checked where it is plain
    rest = words[words.index("massager") + 1 :]
    end = next((i for i, word in enumerate(rest) if word in SHELL_OPERATORS), len(rest))
    return rest[:end]


@pytest.mark.parametrize(("name", "parser"), ALL, ids=[name for name, _ in ALL])
def test_every_help_has_a_description_examples_and_exit_codes(
    name: str, parser: argparse.ArgumentParser
) -> None:
    text = parser.format_help()
    assert parser.description, f"{name} has no description"
    examples = section(text, "Examples")
    assert 2 <= len(examples) <= 4, examples
    assert all("massager" in line for line in examples)
    codes = section(text, "Exit codes")
    documented = [m.group(1) for line in codes if (m := re.match(r"\s{2}(\d+)\s", line))]
    assert "0" in documented
    assert set(documented) <= {"0", "1", "2", "130"}
    assert documented == sorted(set(documented), key=int)
    for line in examples:
        argv = example_argv(line.strip())
        if argv is None:
            continue
        build_parser().parse_args(argv)  # a bad example exits 2 here, naming the problem
        assert argv[: len(name.split()) - 1] == name.split()[1:], f"{line} is not `{name}`"


def test_epilogs_keep_their_layout_and_fit_80_columns() -> None:
    for name, parser in ALL:
        assert parser.epilog is not None
        assert parser.epilog in parser.format_help()  # printed as written, not re-wrapped
        for line in parser.epilog.splitlines():  # a command stays whole, to copy and paste
            assert len(line) <= 80 or line.lstrip().startswith("massager "), f"{name}: {line!r}"


# ---- the broker flags are the same everywhere


def broker_flags(parser: argparse.ArgumentParser) -> set[str]:
    group = next(g for g in parser._action_groups if g.title == "MQTT broker")
    return {flag for action in group._group_actions for flag in action.option_strings}


def test_every_broker_facing_command_has_the_same_broker_flags() -> None:
    commands = dict(ALL)
    flags = {command: broker_flags(commands[f"massager {command}"]) for command in BROKER_COMMANDS}
    assert flags["run"] >= {"--mqtt", "--mqtt-config", "--mqtt-ca", "--topic-prefix"}
    assert all(found == flags["run"] for found in flags.values()), flags


@pytest.mark.parametrize("command", BROKER_COMMANDS)
def test_each_broker_flag_parses_on_each_broker_command(command: str) -> None:
    given = {
        "--mqtt": ("mqtt", "mqtts://broker.example:8883"),
        "--mqtt-config": ("mqtt_config", "broker.toml"),
        "--mqtt-username": ("mqtt_username", "ana"),
        "--mqtt-password": ("mqtt_password", "pw"),
        "--mqtt-ca": ("mqtt_ca", "ca.pem"),
        "--mqtt-cert": ("mqtt_cert", "client.pem"),
        "--mqtt-key": ("mqtt_key", "client.key"),
        "--topic-prefix": ("prefix", "home/massagers"),
    }
    positional = ["heel-spur"] if command == "run" else []
    argv = [command, *positional]
    for flag, (_, value) in given.items():
        argv += [flag, value]
    args = build_parser().parse_args(argv)
    for flag, (dest, value) in given.items():
        assert getattr(args, dest) == value, flag
    assert build_parser().parse_args([command, *positional, "--prefix", "p"]).prefix == "p"


# ---- shell completion


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_scripts_for_each_shell(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "massager" in script
    assert {
        "bash": "complete -o nospace -o default -o bashdefault -F _python_argcomplete massager",
        "zsh": "#compdef massager",
        "fish": "complete --command massager",
    }[shell] in script


def test_completion_help_says_how_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["completion", "--help"]) == 0
    out = capsys.readouterr().out
    assert "massager completion bash > ~/.local/share/bash-completion/completions/massager" in out
    assert "~/.config/fish/completions/massager.fish" in out
    assert "_massager" in out  # zsh: a file on $fpath


def complete(line: str, tmp_path: Path) -> list[str]:
    """What argcomplete answers for `line` (the cursor at its end), from a real process."""
    answer = tmp_path / "completions"
    env = os.environ | {
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    done = massager(env=env)
    assert done.returncode == 0, done.stderr
    return answer.read_text().split("\v")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("massager ru", {"run"}),
        ("massager run hee", {"heel-spur"}),
        ("massager profiles show re", {"relax"}),
        ("massager completion f", {"fish"}),
        ("massager run heel-spur --ca", {"--cap"}),
    ],
)
def test_completion_answers(line: str, expected: set[str], tmp_path: Path) -> None:
    assert {word.strip() for word in complete(line, tmp_path)} == expected


def test_profile_completion_offers_toml_files_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.toml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    found = {word.strip() for word in complete("massager run m", tmp_path)}
    assert "mine.toml" in found
    assert "maintenance" in found  # a built-in profile
    assert "notes.txt" not in {word.strip() for word in complete("massager run n", tmp_path)}


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_round_trip_through_the_generated_script(tmp_path: Path) -> None:
    """Source what `massager completion bash` prints and ask its function, as bash's TAB does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "massager"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m firmware_bridge "$@"\n')
    wrapper.chmod(0o755)
    script = """
        source <(massager completion bash)
        ask() {
            COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$1"
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            _python_argcomplete massager "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
            printf '%s|' "${COMPREPLY[@]}"; echo
        }
        ask "massager ru"
        ask "massager run heel"
    """
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    commands, profiles = done.stdout.splitlines()
    assert commands.split("|")[0].strip() == "run"
    assert profiles.split("|")[0].strip() == "heel-spur"


def test_building_the_parser_imports_neither_bumble_nor_the_simulator() -> None:
    """Completion builds the parser at every TAB: the heavy, lazily imported parts stay out."""
    code = (
        "import sys\n"
        "from firmware_bridge.cli import build_parser\n"
        "build_parser()\n"
        "heavy = {'bumble', 'sim', 'amqtt', 'argcomplete', 'matplotlib'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
