"""Shared drives: the emulator checks the flags as Drive does, and ``drive:@NAME/...``
addresses work end to end (the real google-api-python-client over HTTP, nothing mocked).
"""

from __future__ import annotations

import json
import uuid

import pytest
from googleapiclient.errors import HttpError

from drivesync.checkpoints.lease import FolderLease, LeaseTiming, read_leases
from drivesync.cli import main
from drivesync.errors import NotFound, QuotaExceeded, UsageError
from drivesync.remotes import open_remote

TEAM = "TeamData"


@pytest.fixture
def team(emulator, monkeypatch):
    monkeypatch.setenv("DRIVESYNC_TOKEN", emulator.token)   # for the CLI's own remotes
    return emulator.state.create_drive(TEAM)


@pytest.fixture
def service(drive_service):
    """The real client, pointed at the emulator as the Drive remote points it."""
    return drive_service


@pytest.fixture
def shared(drive_settings, team):
    remote = open_remote(f"drive:@{TEAM}/space_Colab", settings=drive_settings)
    yield remote
    remote.close()


def _status(exc: HttpError) -> tuple:
    err = json.loads(exc.content)["error"]
    return exc.resp.status, err["errors"][0]["reason"]


# ---- the emulator, as Drive answers -------------------------------------------------------
def test_drives_list_get_create(service, emulator):
    made = service.drives().create(requestId=uuid.uuid4().hex, body={"name": "Made"}).execute()
    assert made["kind"] == "drive#drive" and made["name"] == "Made"
    listed = service.drives().list(pageSize=1).execute()
    assert len(listed["drives"]) == 1 and "nextPageToken" not in listed
    assert service.drives().get(driveId=made["id"]).execute()["name"] == "Made"
    with pytest.raises(HttpError) as exc:
        service.drives().get(driveId="0Anope").execute()
    assert _status(exc.value) == (404, "notFound")
    rid = uuid.uuid4().hex
    service.drives().create(requestId=rid, body={"name": "Twice"}).execute()
    with pytest.raises(HttpError) as exc:    # a repeated requestId never makes a second one
        service.drives().create(requestId=rid, body={"name": "Twice"}).execute()
    assert exc.value.resp.status == 409
    assert [d["name"] for d in service.drives().list().execute()["drives"]] == ["Made", "Twice"]


def test_items_need_supports_all_drives_as_on_drive(service, team):
    with pytest.raises(HttpError) as exc:   # a create into a shared drive without the flag
        service.files().create(body={"name": "x.txt", "parents": [team.id]}).execute()
    assert _status(exc.value) == (404, "notFound")
    made = service.files().create(body={"name": "x.txt", "parents": [team.id]},
                                  supportsAllDrives=True, fields="id,driveId,parents").execute()
    assert made["driveId"] == team.id and made["parents"] == [team.id]
    with pytest.raises(HttpError) as exc:
        service.files().get(fileId=made["id"]).execute()
    assert _status(exc.value) == (404, "notFound")
    got = service.files().get(fileId=made["id"], supportsAllDrives=True,
                              fields="id,driveId,ownedByMe").execute()
    assert got == {"id": made["id"], "driveId": team.id, "ownedByMe": False}
    q = f"'{team.id}' in parents"
    assert service.files().list(q=q).execute()["files"] == []   # not without the flags
    found = service.files().list(q=q, corpora="drive", driveId=team.id,
                                 includeItemsFromAllDrives=True,
                                 supportsAllDrives=True).execute()["files"]
    assert [f["id"] for f in found] == [made["id"]]
    with pytest.raises(HttpError) as exc:
        service.files().list(q=q, driveId=team.id).execute()
    assert exc.value.resp.status == 400
    with pytest.raises(HttpError) as exc:
        service.files().list(q=q, corpora="drive", driveId=team.id,
                             supportsAllDrives=True).execute()
    assert exc.value.resp.status == 403
    with pytest.raises(HttpError) as exc:
        service.files().delete(fileId=made["id"]).execute()
    assert exc.value.resp.status == 404


def test_shared_drive_trash_and_quota_are_the_drives(service, team, emulator):
    emulator.configure(quota_limit=100)
    from googleapiclient.http import MediaInMemoryUpload

    big = MediaInMemoryUpload(b"x" * 500, mimetype="application/octet-stream")
    f = service.files().create(body={"name": "big.bin", "parents": [team.id]}, media_body=big,
                               supportsAllDrives=True).execute()   # over the user's quota: fine
    assert service.about().get(fields="storageQuota").execute()["storageQuota"]["usage"] == "0"
    service.files().update(fileId=f["id"], body={"trashed": True},
                           supportsAllDrives=True).execute()
    service.files().emptyTrash().execute()          # My Drive's trash: not the drive's
    assert service.files().get(fileId=f["id"], supportsAllDrives=True,
                               fields="trashed").execute()["trashed"] is True
    service.files().emptyTrash(driveId=team.id).execute()
    with pytest.raises(HttpError):
        service.files().get(fileId=f["id"], supportsAllDrives=True).execute()


# ---- drive:@NAME addresses ---------------------------------------------------------------
def test_shared_drive_remote_round_trip(shared, drive_remote, team, emulator, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"team bytes")
    made = shared.upload(src, "data/a.txt")
    assert [e.path for e in shared.walk()] == ["data", "data/a.txt"]
    shared.copy(made, "data/b.txt")
    shared.move("data/b.txt", "data/c.txt")
    shared.download("data/c.txt", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"team bytes"
    files = {f["name"]: f for f in emulator.state.all_files()}
    assert files["a.txt"]["driveId"] == team.id and files["space_Colab"]["driveId"] == team.id
    # nothing of it is in My Drive, where drive:space_Colab would look
    with pytest.raises(NotFound):
        drive_remote.list("")
    # every files call carried supportsAllDrives (the emulator answers 404 otherwise)
    shared.delete("data/c.txt")
    q = shared.quota()
    assert (q.limit, q.usage, q.trash, q.items) == (None, 20, 10, 4)
    assert "no per-user quota" in q.note and q.item_limit == 400_000
    shared.empty_trash()
    assert shared.quota().trash == 0 and shared.quota().items == 3


def test_quota_cli_prints_what_is_true_there(drive_settings, shared, tmp_path, capsys):
    src = tmp_path / "a.bin"
    src.write_bytes(b"1" * 1000)
    shared.upload(src, "a.bin")
    argv = ["--endpoint", drive_settings.api_endpoint]
    assert main(["quota", f"drive:@{TEAM}", *argv]) == 0
    out = capsys.readouterr().out
    assert "items" in out and "2 of 400000" in out and "no per-user quota" in out
    assert "limit" not in out.split("(")[0]
    assert main(["quota", f"drive:@{TEAM}", "--json", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["limit"] is None and doc["usage"] == 1000 and doc["items"] == 2


def test_missing_and_ambiguous_drive_names_are_clear_errors(drive_settings, team, emulator,
                                                           capsys):
    argv = ["--endpoint", drive_settings.api_endpoint]
    assert main(["ls", "drive:@Nope/x", *argv]) == 3
    assert "no shared drive named 'Nope'" in capsys.readouterr().err
    emulator.state.create_drive("Twin")
    emulator.state.create_drive("Twin")
    assert main(["ls", "drive:@Twin", *argv]) == 2
    err = capsys.readouterr().err
    assert "2 shared drives are named 'Twin'" in err and "Traceback" not in err
    with pytest.raises(UsageError):
        open_remote("drive:@/x", settings=drive_settings)


def test_push_pull_prune_latest_on_a_shared_drive(drive_settings, shared, tmp_path, capsys):
    src = tmp_path / "ds"
    (src / "images").mkdir(parents=True)
    for i in range(3):
        (src / "images" / f"{i}.jpg").write_bytes(bytes([i]) * 50)
    argv = ["--endpoint", drive_settings.api_endpoint]
    target = f"drive:@{TEAM}/space_Colab/ds"
    assert main(["push", str(src), target, "-q", *argv]) == 0
    assert main(["pull", target, str(tmp_path / "back"), "-q", *argv]) == 0
    assert sorted(p.name for p in (tmp_path / "back" / "images").iterdir()) == \
        ["0.jpg", "1.jpg", "2.jpg"]
    for i in (1, 2, 3):
        ck = tmp_path / f"m_{i}.pt"
        ck.write_bytes(bytes([i]) * 100)
        shared.upload(ck, f"w/m_{i}.pt")
    assert main(["prune", f"drive:@{TEAM}/space_Colab/w", "--keep-last", "1", "--yes", "-q",
                 *argv]) == 0
    assert [e.name for e in shared.list("w")] == ["m_3.pt"]
    assert main(["latest", f"drive:@{TEAM}/space_Colab/w", *argv]) == 0
    assert "m_3.pt" in capsys.readouterr().out
    assert shared.quota().trash == 200         # prune trashed them into the drive's trash


def test_a_full_shared_drive_is_a_quota_error(shared, emulator, tmp_path):
    emulator.configure(max_drive_items=2)      # the drive's root folder does not count
    src = tmp_path / "a"
    src.write_bytes(b"a")
    shared.upload(src, "a")                    # space_Colab + a
    with pytest.raises(QuotaExceeded, match="teamDriveFileLimitExceeded"):
        shared.upload(src, "b")


def test_launchers_race_for_a_lease_in_a_shared_drive(drive_settings, team):
    import threading

    timing = LeaseTiming(settle=0.02)
    start = threading.Barrier(3)
    won: list = []
    lost: list = []

    def run() -> None:
        lease = FolderLease(open_remote(f"drive:@{TEAM}/runs", settings=drive_settings),
                            timing=timing)
        start.wait()
        try:
            lease.acquire()
            won.append(lease)
        except Exception as exc:  # noqa: BLE001 - the test counts them
            lost.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1 and len(lost) == 2, lost
    assert all("leased by another launch" in str(e) for e in lost)
    with open_remote(f"drive:@{TEAM}/runs", settings=drive_settings) as check:
        assert [r.owner for r in read_leases(check)] == [won[0].me.owner]
    won[0].release()
