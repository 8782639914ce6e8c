"""Shell completion with argcomplete: `massager completion bash|zsh|fish` and the TAB answer.

At each TAB the shell runs `massager` with argcomplete's variables set; `autocomplete` then
builds the answer from the real parser and exits. Nothing here is imported for that until
the shell asks, and profile names are read only when one is being completed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from firmware_bridge.cli.helptext import BAD_INPUT, epilog

SHELLS = ("bash", "zsh", "fish")
INSTALL = """\
Install it once, then open a new shell.
bash, with the bash-completion package:
  massager completion bash > ~/.local/share/bash-completion/completions/massager
  (without it, put this line in ~/.bashrc:  eval "$(massager completion bash)")
zsh:
  mkdir -p ~/.zfunc && massager completion zsh > ~/.zfunc/_massager
  and in ~/.zshrc, before compinit:  fpath+=(~/.zfunc)
fish:
  massager completion fish > ~/.config/fish/completions/massager.fish

Profile names complete after `run` and `profiles show`, file names wherever a
file goes."""


def add_completion_command(commands: Any) -> None:
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or fish",
        description="Print the TAB-completion script for your shell on stdout.",
        epilog=epilog(
            [
                "massager completion bash > ~/.local/share/bash-completion/completions/massager",
                "massager completion fish > ~/.config/fish/completions/massager.fish",
                'eval "$(massager completion zsh)"',
            ],
            [("0", "printed"), BAD_INPUT],
            notes=INSTALL,
        ),
    )
    completion.add_argument("shell", choices=SHELLS, help="bash, zsh or fish")
    completion.set_defaults(handler=completion_command)


def completion_command(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["massager"], shell=args.shell))
    return 0


def profile_names(prefix: str, **kwargs: Any) -> list[str]:
    """Completer: built-in profile names, then TOML files and directories."""
    from argcomplete.completers import FilesCompleter

    from profiles.loader import library_names

    names = [name for name in library_names() if name.startswith(prefix)]
    return names + list(FilesCompleter(allowednames=("toml",))(prefix, **kwargs))


def toml_files(prefix: str, **kwargs: Any) -> list[str]:
    """Completer: TOML files and directories."""
    from argcomplete.completers import FilesCompleter

    return list(FilesCompleter(allowednames=("toml",))(prefix, **kwargs))


# (command words, positional dest) -> its completer; other arguments complete file names.
COMPLETERS = {
    (("run",), "profile"): profile_names,
    (("profiles", "show"), "name"): profile_names,
    (("profiles", "validate"), "file"): toml_files,
}


def _parser_at(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> argparse.ArgumentParser:
    for word in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def attach_completers(parser: argparse.ArgumentParser) -> None:
    """Give the profile arguments their completers (argcomplete reads `action.completer`)."""
    for (words, dest), completer in COMPLETERS.items():
        action = next(a for a in _parser_at(parser, words)._actions if a.dest == dest)
        action.completer = completer  # type: ignore[attr-defined]  # argcomplete's protocol


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's TAB and exit, when argcomplete's variables say it is asking."""
    if "_ARGCOMPLETE" not in os.environ:  # an ordinary run: not even argcomplete is imported
        return
    import argcomplete

    attach_completers(parser)
    argcomplete.autocomplete(parser)


__all__ = ["SHELLS", "add_completion_command", "attach_completers", "autocomplete"]
