"""``retina --help`` is help for users: plain text in every command's help; ``retina --version``."""

from __future__ import annotations

import argparse
import importlib.metadata
import re

import pytest

from retina.cli import COMMANDS, build_parser, main

# reStructuredText that reads badly in a terminal: ``literal``, :role:`target`, `link`_
MARKUP = re.compile(r"``|:[a-z]+:`|`_")


def _texts(parser: argparse.ArgumentParser) -> list[str]:
    texts = [parser.description or "", parser.epilog or "", parser.format_help()]
    return texts + [action.help or "" for action in parser._actions]


def _command_parser(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_is_plain_text(name: str | None) -> None:
    parser = build_parser([]) if name is None else _command_parser(name)
    texts = _texts(parser)
    assert len(texts) > 3  # the command's own arguments were added
    found = [m.group(0) for text in texts for m in MARKUP.finditer(text)]
    assert not found, f"markup in the help of {name or 'retina'}: {found}"


def test_help_of_every_command_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert f"usage: retina {name}" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"retina {importlib.metadata.version('retina')}"


def test_markup_pattern_finds_markup() -> None:
    assert MARKUP.search("see ``retina.x``") and MARKUP.search("see :func:`f`") and not MARKUP.search("a 'b' c")
