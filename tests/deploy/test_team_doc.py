"""Every `multispot ...` command docs/team.md tells a team to type is one the CLI accepts: the
walkthrough cannot drift from the commands it names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from multispot.cli import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "team.md"


def documented_commands() -> list[list[str]]:
    """`multispot ARGS` as typed at a prompt, or run in a container (`... exec server multispot
    ARGS`, `kubectl exec ... -- multispot ARGS`)."""
    commands = []
    for block in re.findall(r"```(?:sh)?\n(.*?)```", DOC.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("<", "").replace(">", ""), comments=True)
            for i, word in enumerate(words):
                if word == "multispot" and (
                    i == 0 or words[i - 1] == "--" or words[i - 2 : i - 1] == ["exec"]
                ):
                    commands.append(words[i + 1 :])
    return commands


def parse(group: click.Group, args: list[str]) -> click.Context:
    """Parse ``args`` as the CLI would, down to the last subcommand, without running anything."""
    context = group.make_context("multispot", list(args))
    while isinstance(context.command, click.Group):
        rest = [*context._protected_args, *context.args]
        name, command, rest = context.command.resolve_command(context, rest)
        assert command is not None and name is not None
        context = command.make_context(name, rest, parent=context)
    return context


COMMANDS = documented_commands()


def test_the_walkthrough_names_the_commands_a_team_needs() -> None:
    named = {" ".join(words[:2]) if words[0] == "admin" else words[0] for words in COMMANDS}
    assert {
        "admin create-user",
        "admin create-token",
        "admin create-team",
        "login",
        "logout",
        "submit",
    } <= named


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_every_documented_command_parses(args: list[str]) -> None:
    parse(cli, args)
