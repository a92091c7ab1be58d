"""CLI conventions: every verb has --help with an example; the entry point runs."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from drivesync.cli import build_parser, main


def _verbs(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _verbs(sub, prefix + (name,))


VERBS = list(_verbs(build_parser()))


def test_expected_verbs_are_registered():
    names = {v[0] for v, _ in VERBS}
    assert {"demo"} <= names


@pytest.mark.parametrize("verb", [" ".join(v) for v, _ in VERBS])
def test_every_verb_has_help_with_an_example(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main(verb.split() + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower(), f"`drivesync {verb} --help` shows no example"


def test_no_verb_prints_help(capsys):
    assert main([]) == 0
    assert "VERB" in capsys.readouterr().out


def test_entry_point_subprocess():
    res = subprocess.run([sys.executable, "-m", "drivesync", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("drivesync ")


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-verb"])
    assert exc.value.code == 2
