"""The one outcome type, the typed Stopped error and the default event channel."""

import logging

import pytest

from drivesync.errors import EXIT_NETWORK, EXIT_QUOTA, NetworkDown, QuotaExceeded, Stopped
from drivesync.outcome import Outcome, Problem, problems
from drivesync.progress import NULL_PROGRESS


def test_outcome_ok_and_json_shape():
    o = Outcome(dry_run=True)
    assert o.ok and o.to_dict()["ok"] is True
    o.problem("a/b.jpg", "cannot read")
    o.warn("c", "note")
    d = o.to_dict()
    assert d["ok"] is False and d["dry_run"] is True
    assert d["problems"] == [{"path": "a/b.jpg", "reason": "cannot read"}]
    assert d["warnings"] == [{"path": "c", "reason": "note"}]
    path, reason = o.problems[0]          # still reads as a (path, reason) pair
    assert (path, reason) == ("a/b.jpg", "cannot read")


def test_problems_from_pairs_and_mappings():
    assert problems([("a", "x")]) == [Problem("a", "x")]
    assert problems({"b": "y"}) == [Problem("b", "y")]
    assert Problem("", "whole run").line() == "whole run"


def test_stopped_keeps_the_cause_class_and_exit_code():
    o = Outcome()
    err = Stopped.of(QuotaExceeded("storage full"), o, "storage full. Stopped with 3 left")
    assert isinstance(err, Stopped) and isinstance(err, QuotaExceeded)
    assert err.exit_code == EXIT_QUOTA and err.outcome is o
    assert str(err) == "storage full. Stopped with 3 left"
    with pytest.raises(QuotaExceeded):
        raise err
    again = Stopped.of(err, o)                 # re-wrapping keeps the original cause
    assert type(again) is type(err) and isinstance(again.cause, QuotaExceeded)
    net = Stopped.of(NetworkDown("gone"), o)
    assert net.exit_code == EXIT_NETWORK and not isinstance(net, QuotaExceeded)


def test_null_channel_logs_warnings_and_says_yes(caplog):
    with caplog.at_level(logging.WARNING, logger="drivesync"):
        NULL_PROGRESS.on_warning("careful")
        NULL_PROGRESS.on_event("news")
    assert [r.getMessage() for r in caplog.records] == ["careful"]
    assert NULL_PROGRESS.confirm("delete 3 files?", ["a", "b", "c"]) is True


def test_cli_channel_routes_events_warnings_and_questions(monkeypatch, capsys):
    from drivesync.cli.context import Context
    from drivesync.config import Settings

    ctx = Context(settings=Settings())
    ch = ctx.progress()
    ch.on_event("resumed from x")
    ch.on_warning("careful")
    ch.on_warning("careful")                 # printed once
    ch.on_output("1: 699.3, avg loss\n")
    out, err = capsys.readouterr()
    assert out.splitlines() == ["resumed from x", "1: 699.3, avg loss"]
    assert err.splitlines() == ["drivesync: warning: careful"]
    assert ctx.progress(yes=True).confirm("delete?", ["a"]) is True
    monkeypatch.setattr("builtins.input", lambda _q: "n")
    assert ch.confirm("delete?", ["a", "b"]) is False
    monkeypatch.setattr("builtins.input", lambda _q: "yes")
    assert ch.confirm("delete?", ["a"]) is True
    assert capsys.readouterr().out.splitlines() == ["a", "b", "a"]   # what it asks about
    quiet = Context(settings=Settings(), quiet=True).progress()
    quiet.on_event("chatter")
    quiet.on_warning("still said")
    out, err = capsys.readouterr()
    assert out == "" and "still said" in err
