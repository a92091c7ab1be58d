"""The Drive v3 emulator, driven by the real google-api-python-client over HTTP.

Nothing from the Google libraries is mocked: each test builds a client from the
packaged discovery document with ``rootUrl`` pointed at the emulator, exactly as
the Drive remote does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import google.oauth2.credentials
import pytest
import requests
from google.auth.exceptions import RefreshError
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseDownload, MediaIoBaseUpload
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesync.emulator import Emulator, EmulatorClient
from drivesync.emulator.query import compile_query, format_time, parse_fields, parse_time

FOLDER = "application/vnd.google-apps.folder"
CHUNK = 256 * 1024


def make_service(url: str, token: str):
    doc = json.loads(get_static_doc("drive", "v3"))
    doc["rootUrl"] = url
    doc["mtlsRootUrl"] = url
    creds = google.oauth2.credentials.Credentials(token)
    return build_from_document(doc, credentials=creds)


@pytest.fixture
def svc(emulator):
    return make_service(emulator.url, emulator.token)


def reason(err: HttpError) -> str:
    return err.error_details[0]["reason"]


def mkdir(svc, name, parent="root"):
    return svc.files().create(body={"name": name, "mimeType": FOLDER, "parents": [parent]},
                              fields="id").execute()["id"]


def put(svc, name, data: bytes, parent="root", **meta):
    media = MediaIoBaseUpload(io.BytesIO(data), mimetype="application/octet-stream")
    body = {"name": name, "parents": [parent], **meta}
    return svc.files().create(body=body, media_body=media,
                              fields="id,name,size,md5Checksum,modifiedTime,parents").execute()


def resumable(svc, name, data: bytes, parent="root", chunksize=CHUNK):
    media = MediaIoBaseUpload(io.BytesIO(data), mimetype="application/octet-stream",
                              chunksize=chunksize, resumable=True)
    return svc.files().create(body={"name": name, "parents": [parent]}, media_body=media,
                              fields="id,size,md5Checksum")


def finish(request):
    response = None
    while response is None:
        _status, response = request.next_chunk()
    return response


def download(svc, file_id, chunksize=100 * 1024) -> bytes:
    buf = io.BytesIO()
    dl = MediaIoBaseDownload(buf, svc.files().get_media(fileId=file_id), chunksize=chunksize)
    done = False
    while not done:
        _status, done = dl.next_chunk()
    return buf.getvalue()


def names(svc, q, **kw):
    files = svc.files().list(q=q, fields="files(name)", pageSize=1000, **kw).execute()["files"]
    return [f["name"] for f in files]


# ---------------------------------------------------------------------------- listing


def test_list_default_fields_and_partial_responses(svc):
    folder = mkdir(svc, "data")
    put(svc, "a.txt", b"alpha", parent=folder)
    plain = svc.files().list(q=f"'{folder}' in parents").execute()
    assert plain["kind"] == "drive#fileList"
    assert set(plain["files"][0]) == {"kind", "id", "name", "mimeType"}
    full = svc.files().list(
        q=f"'{folder}' in parents",
        fields="nextPageToken, files(id,name,mimeType,size,md5Checksum,modifiedTime,"
               "createdTime,parents,trashed)").execute()
    assert set(full) == {"files"}
    f = full["files"][0]
    assert f["size"] == "5" and f["md5Checksum"] == hashlib.md5(b"alpha").hexdigest()
    assert f["parents"] == [folder] and f["trashed"] is False
    assert f["modifiedTime"].endswith("Z") and parse_time(f["modifiedTime"]) > 0


def test_query_forms(svc):
    folder = mkdir(svc, "f")
    put(svc, "it's.txt", b"1", parent=folder)
    put(svc, "b.bin", b"2", parent=folder)
    mkdir(svc, "sub", parent=folder)
    gone = put(svc, "old.txt", b"3", parent=folder)["id"]
    svc.files().update(fileId=gone, body={"trashed": True}).execute()
    put(svc, "elsewhere.txt", b"4")
    inside = f"'{folder}' in parents"
    assert sorted(names(svc, inside)) == ["b.bin", "it's.txt", "old.txt", "sub"]
    assert sorted(names(svc, f"{inside} and trashed = false")) == ["b.bin", "it's.txt", "sub"]
    assert names(svc, f"{inside} and trashed = true") == ["old.txt"]
    assert names(svc, "name = 'it\\'s.txt'") == ["it's.txt"]
    assert names(svc, f"{inside} and mimeType = '{FOLDER}'") == ["sub"]
    assert sorted(names(svc, f"{inside} and mimeType != '{FOLDER}' and trashed = false")) == [
        "b.bin", "it's.txt"]
    either = "(name = 'b.bin' or name = 'elsewhere.txt') and not (trashed = true)"
    assert sorted(names(svc, either)) == ["b.bin", "elsewhere.txt"]
    assert sorted(names(svc, "'root' in parents and trashed = false")) == ["elsewhere.txt", "f"]
    with pytest.raises(HttpError) as info:
        svc.files().list(q="bogus ~ 1").execute()
    assert info.value.status_code == 400


def test_paging_and_order(svc):
    folder = mkdir(svc, "many")
    for i in range(25):
        svc.files().create(body={"name": f"n{i:02d}", "parents": [folder],
                                 "modifiedTime": f"2024-01-01T00:00:{59 - i:02d}.000Z"}).execute()
    mkdir(svc, "zfolder", parent=folder)
    seen, token, pages = [], None, 0
    while True:
        resp = svc.files().list(q=f"'{folder}' in parents", pageSize=10, pageToken=token,
                                orderBy="name", fields="nextPageToken,files(name)").execute()
        seen += [f["name"] for f in resp["files"]]
        pages += 1
        token = resp.get("nextPageToken")
        if not token:
            break
    assert pages == 3 and seen == sorted(seen) and len(seen) == 26
    first = names(svc, f"'{folder}' in parents", orderBy="folder,modifiedTime")
    assert first[0] == "zfolder" and first[1] == "n24"
    assert names(svc, f"'{folder}' in parents", orderBy="name desc")[0] == "zfolder"
    with pytest.raises(HttpError) as info:
        svc.files().list(pageSize=0).execute()
    assert info.value.status_code == 400


def test_page_size_above_1000_is_coerced_not_refused(svc, emulator):
    """The v3 reference: "values above 1000 will be coerced to 1000"."""
    for i in range(3):
        put(svc, f"p{i}", b"")
    resp = svc.files().list(pageSize=5000, fields="nextPageToken,files(name)").execute()
    assert len(resp["files"]) == 3 and "nextPageToken" not in resp


def test_drive_remote_lists_everything_when_pages_come_back_short(drive_remote, emulator,
                                                                  tmp_path):
    """Drive may return fewer items than pageSize while more follow: follow the token."""
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for i in range(7):
        drive_remote.upload(src, f"many/f{i}")
    emulator.configure(max_page=2)
    before = emulator.counters["ops"].get("files.list", 0)
    assert [e.name for e in drive_remote.list("many")] == [f"f{i}" for i in range(7)]
    assert emulator.counters["ops"]["files.list"] - before == 4      # 2 + 2 + 2 + 1
    with pytest.raises(ValueError, match="max_page"):
        emulator.configure(max_page=0)


def test_unknown_fields_are_refused_before_anything_happens(svc, emulator):
    """Drive answers 400 invalidParameter for a name the resource does not have, so a
    typo in a client's field mask fails here too instead of quietly returning less."""
    for call in (lambda: svc.files().list(fields="nextPageToken,files(id,nmae)"),
                 lambda: svc.files().list(fields="files/id,nextPagetoken"),
                 lambda: svc.files().create(body={"name": "x"}, fields="id,md5"),
                 lambda: svc.about().get(fields="storageQuota(limit,usageInTrash)")):
        with pytest.raises(HttpError) as info:
            call().execute()
        assert info.value.status_code == 400 and reason(info.value) == "invalidParameter"
        assert info.value.error_details[0]["location"] == "fields"
    assert emulator.state.all_files() == []              # the create never happened
    ok = svc.files().list(fields="files(id,owners(emailAddress),capabilities/canEdit)")
    assert ok.execute() == {"files": []}
    quota = svc.about().get(fields="storageQuota").execute()["storageQuota"]
    assert set(quota) == {"usage", "usageInDrive", "usageInDriveTrash"}   # no limit: unlimited


def test_fields_parser():
    assert parse_fields("nextPageToken, files(id,name)") == {
        "nextPageToken": None, "files": {"id": None, "name": None}}
    assert parse_fields("files/id,files/name") == {"files": {"id": None, "name": None}}
    assert parse_fields("*") is None


class _Rec:
    def __init__(self, name: str):
        self.name, self.mime_type, self.parents, self.trashed = name, "text/plain", ["p"], False


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_name_queries_escape_any_name(name, other):
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    query = compile_query(f"name = '{escaped}' and 'p' in parents", resolve=lambda i: i)
    assert query.parent == "p"
    assert query.match(_Rec(name)) and query.match(_Rec(other)) == (other == name)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000_000))
def test_times_round_trip_to_the_millisecond(millis):
    assert parse_time(format_time(millis / 1000)) == pytest.approx(millis / 1000, abs=1e-6)


# ---------------------------------------------------------------------------- uploads


def test_create_media_multipart_and_metadata(svc, emulator):
    media = MediaIoBaseUpload(io.BytesIO(b"raw"), mimetype="text/plain")
    simple = svc.files().create(media_body=media, fields="id,name,size,parents").execute()
    assert simple["size"] == "3" and simple["parents"] == [svc.files().get(
        fileId="root", fields="id").execute()["id"]]
    multi = put(svc, "m.bin", b"x" * 1000, modifiedTime="2020-02-03T04:05:06.789Z")
    assert multi["modifiedTime"] == "2020-02-03T04:05:06.789Z"
    empty = svc.files().create(body={"name": "e.txt"}, fields="size,md5Checksum").execute()
    assert empty == {"size": "0", "md5Checksum": hashlib.md5(b"").hexdigest()}
    with pytest.raises(HttpError) as info:
        svc.files().create(body={"name": "x", "parents": ["nope-not-there"]}).execute()
    assert info.value.status_code == 404 and reason(info.value) == "notFound"
    assert emulator.counters["creates"] == 3


def test_resumable_upload_in_chunks(svc, emulator):
    data = os.urandom(3 * CHUNK + 1234)
    out = finish(resumable(svc, "big.bin", data))
    assert out["size"] == str(len(data)) and out["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert emulator.counters["ops"]["upload.chunk"] == 4
    assert download(svc, out["id"]) == data


def test_resumable_status_query_after_reset(svc, emulator):
    data = os.urandom(2 * CHUNK + 10)
    request = resumable(svc, "r.bin", data)
    status, response = request.next_chunk()
    assert response is None and status.resumable_progress == CHUNK
    emulator.inject("reset", method="PUT")
    with pytest.raises(Exception):  # noqa: B017 - the transport error type is httplib2's
        request.next_chunk()
    # The client now asks where to resume (PUT, empty body, Content-Range: bytes */N).
    out = finish(request)
    assert out["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert emulator.counters["faults"] == 1


def test_resumable_status_query_on_the_wire(svc, emulator):
    data = os.urandom(CHUNK + 5)
    request = resumable(svc, "w.bin", data)
    request.next_chunk()
    auth = {"Authorization": f"Bearer {emulator.token}"}
    resp = requests.put(request.resumable_uri, headers={**auth, "Content-Range":
                                                        f"bytes */{len(data)}"})
    assert resp.status_code == 308 and resp.headers["Range"] == f"bytes=0-{CHUNK - 1}"
    fresh = svc.files().create(body={"name": "n"}, media_body=MediaIoBaseUpload(
        io.BytesIO(b"abc"), mimetype="text/plain", resumable=True))
    session = requests.post(f"{emulator.url}upload/drive/v3/files?uploadType=resumable",
                            headers=auth, json={"name": "n"})
    assert session.status_code == 200 and fresh is not None
    nothing = requests.put(session.headers["Location"],
                           headers={**auth, "Content-Range": "bytes */3"})
    assert nothing.status_code == 308 and "Range" not in nothing.headers
    done = requests.put(session.headers["Location"], data=b"abc",
                        headers={**auth, "Content-Range": "bytes 0-2/3"})
    assert done.status_code == 200 and done.json()["name"] == "n"



def test_resumable_chunks_but_the_last_are_multiples_of_256_kib(svc, emulator):
    """As Google's upload servers: an odd-sized chunk that is not the last is refused
    (400) and nothing of it is kept; the last one may have any size."""
    data = os.urandom(CHUNK + 1000)
    auth = {"Authorization": f"Bearer {emulator.token}"}
    session = requests.post(f"{emulator.url}upload/drive/v3/files?uploadType=resumable",
                            headers=auth, json={"name": "odd.bin"})
    url = session.headers["Location"]
    odd = requests.put(url, data=data[:1000],
                       headers={**auth, "Content-Range": f"bytes 0-999/{len(data)}"})
    assert odd.status_code == 400 and "multiple of 262144" in odd.json()["error"]["message"]
    status = requests.put(url, headers={**auth, "Content-Range": f"bytes */{len(data)}"})
    assert status.status_code == 308 and "Range" not in status.headers
    first = requests.put(url, data=data[:CHUNK],
                         headers={**auth, "Content-Range": f"bytes 0-{CHUNK - 1}/{len(data)}"})
    assert first.status_code == 308
    last = requests.put(url, data=data[CHUNK:], headers={
        **auth, "Content-Range": f"bytes {CHUNK}-{len(data) - 1}/{len(data)}"})
    assert last.status_code == 200
    with pytest.raises(HttpError) as info:   # the client library with an odd chunk size
        finish(resumable(svc, "odd2.bin", data, chunksize=CHUNK - 1))
    assert info.value.status_code == 400

def test_expired_session_is_404(svc, emulator):
    request = resumable(svc, "x.bin", os.urandom(CHUNK + 1))
    request.next_chunk()
    emulator.inject("expire_session")
    with pytest.raises(HttpError) as info:
        request.next_chunk()
    assert info.value.status_code == 404
    resp = requests.put(request.resumable_uri, headers={
        "Authorization": f"Bearer {emulator.token}", "Content-Range": "bytes */*"})
    assert resp.status_code == 404  # forgotten, not just failed once
    assert not [f for f in emulator.state.all_files() if f["name"] == "x.bin"]


def test_generate_ids_and_409_on_reuse(svc):
    ids = svc.files().generateIds(count=5, space="drive").execute()
    assert ids["kind"] == "drive#generatedIds" and len(set(ids["ids"])) == 5
    fid = ids["ids"][0]
    made = put(svc, "once.txt", b"1", id=fid)
    assert made["id"] == fid
    with pytest.raises(HttpError) as info:
        put(svc, "twice.txt", b"2", id=fid)
    assert info.value.status_code == 409 and reason(info.value) == "fileIdInUse"
    assert info.value.reason == "A file already exists with the provided ID."
    with pytest.raises(HttpError) as info:
        svc.files().create(body={"id": fid, "name": "dir", "mimeType": FOLDER}).execute()
    assert info.value.status_code == 409
    with pytest.raises(HttpError):
        svc.files().generateIds(count=1001).execute()


# ---------------------------------------------------------------------------- downloads


def test_get_media_and_ranges(svc, emulator):
    data = bytes(range(256)) * 1000
    fid = put(svc, "r.bin", data)["id"]
    assert download(svc, fid, chunksize=64 * 1024) == data
    url = f"{emulator.url}drive/v3/files/{fid}?alt=media"
    auth = {"Authorization": f"Bearer {emulator.token}"}
    part = requests.get(url, headers={**auth, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = requests.get(url, headers={**auth, "Range": f"bytes={len(data) - 5}-"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    whole = requests.get(url, headers=auth)
    assert whole.status_code == 200 and whole.content == data
    assert requests.get(url, headers={**auth, "Range": f"bytes={len(data)}-"}).status_code == 416
    folder = mkdir(svc, "d")
    with pytest.raises(HttpError) as info:
        svc.files().get_media(fileId=folder).execute()
    assert info.value.status_code == 403


def test_dropped_download_is_cut_short(svc, emulator):
    data = os.urandom(300 * 1024)
    fid = put(svc, "d.bin", data)["id"]
    emulator.inject("drop", path_contains="alt=media")
    url = f"{emulator.url}drive/v3/files/{fid}?alt=media"
    with pytest.raises(requests.exceptions.RequestException):
        r = requests.get(url, headers={"Authorization": f"Bearer {emulator.token}"})
        r.raise_for_status()
        assert len(r.content) < len(data)  # pragma: no cover - requests raises first
    assert download(svc, fid) == data


# ---------------------------------------------------------------------------- updates


def test_update_rename_move_trash_content(svc, emulator):
    a, b = mkdir(svc, "a"), mkdir(svc, "b")
    f = put(svc, "f.txt", b"one", parent=a)
    renamed = svc.files().update(fileId=f["id"], body={"name": "g.txt"},
                                 fields="name,version,modifiedTime").execute()
    assert renamed["name"] == "g.txt" and renamed["modifiedTime"] == f["modifiedTime"]
    moved = svc.files().update(fileId=f["id"], addParents=b, removeParents=a,
                               fields="parents").execute()
    assert moved["parents"] == [b]
    with pytest.raises(HttpError) as info:
        svc.files().update(fileId=f["id"], addParents=a, fields="parents").execute()
    assert info.value.status_code == 403
    media = MediaIoBaseUpload(io.BytesIO(b"second version"), mimetype="text/plain")
    new = svc.files().update(fileId=f["id"], media_body=media,
                             fields="size,md5Checksum").execute()
    assert new == {"size": "14", "md5Checksum": hashlib.md5(b"second version").hexdigest()}
    quota = svc.about().get(fields="storageQuota").execute()["storageQuota"]
    assert quota["usage"] == str(14 + 3)  # the old content is a revision and still counts
    assert download(svc, f["id"]) == b"second version"
    svc.files().update(fileId=b, body={"trashed": True}).execute()
    child = svc.files().get(fileId=f["id"], fields="trashed,explicitlyTrashed").execute()
    assert child == {"trashed": True, "explicitlyTrashed": False}
    svc.files().update(fileId=b, body={"trashed": False}).execute()
    assert svc.files().get(fileId=f["id"], fields="trashed").execute() == {"trashed": False}
    with pytest.raises(HttpError) as info:
        svc.files().update(fileId=a, addParents=a, removeParents="root").execute()
    assert info.value.status_code == 400


def test_a_trashed_folder_trashes_what_is_created_in_or_moved_into_it(svc, emulator):
    bin_ = mkdir(svc, "bin")
    svc.files().update(fileId=bin_, body={"trashed": True}).execute()
    inside = put(svc, "late.txt", b"x", parent=bin_)["id"]
    state = "trashed,explicitlyTrashed"
    assert svc.files().get(fileId=inside, fields=state).execute() == {
        "trashed": True, "explicitlyTrashed": False}
    assert names(svc, f"'{bin_}' in parents and trashed = false") == []
    keep = mkdir(svc, "keep")
    put(svc, "deep.txt", b"y", parent=keep)
    svc.files().update(fileId=keep, addParents=bin_, removeParents="root").execute()
    assert names(svc, "trashed = true") == ["bin", "late.txt", "keep", "deep.txt"]
    svc.files().update(fileId=keep, addParents="root", removeParents=bin_).execute()
    assert names(svc, "trashed = true") == ["bin", "late.txt"]
    quota = svc.about().get(fields="storageQuota(usageInDriveTrash)").execute()
    assert quota == {"storageQuota": {"usageInDriveTrash": "1"}}
    svc.files().emptyTrash().execute()
    assert sorted(f["name"] for f in emulator.state.all_files()) == ["deep.txt", "keep"]


def test_resumable_content_update(svc):
    fid = put(svc, "u.bin", b"old")["id"]
    data = os.urandom(CHUNK + 7)
    media = MediaIoBaseUpload(io.BytesIO(data), mimetype="application/octet-stream",
                              chunksize=CHUNK, resumable=True)
    out = finish(svc.files().update(fileId=fid, media_body=media, fields="id,md5Checksum"))
    assert out == {"id": fid, "md5Checksum": hashlib.md5(data).hexdigest()}


def test_delete_empty_trash_and_quota(svc):
    top = mkdir(svc, "top")
    sub = mkdir(svc, "sub", parent=top)
    put(svc, "x", b"12345", parent=sub)
    keep = put(svc, "keep", b"123")["id"]
    junk = put(svc, "junk", b"1234567")["id"]
    svc.files().update(fileId=junk, body={"trashed": True}).execute()
    quota = svc.about().get(fields="storageQuota,user").execute()
    assert quota["storageQuota"] == {"usage": "15", "usageInDrive": "15",
                                     "usageInDriveTrash": "7"}
    assert quota["user"]["me"] is True
    svc.files().delete(fileId=top).execute()
    with pytest.raises(HttpError) as info:
        svc.files().get(fileId=sub).execute()
    assert info.value.status_code == 404
    svc.files().emptyTrash().execute()
    assert [f["id"] for f in svc.files().list(fields="files(id)").execute()["files"]] == [keep]
    usage = svc.about().get(fields="storageQuota").execute()["storageQuota"]
    assert usage["usage"] == "3" and usage["usageInDriveTrash"] == "0"
    with pytest.raises(HttpError):
        svc.about().get().execute()  # Drive insists on fields for about.get


def test_batch_of_deletes(svc, emulator):
    ids = [put(svc, f"b{i}", b"x")["id"] for i in range(5)]
    results = {}

    def done(request_id, response, exception):
        results[request_id] = exception

    batch = svc.new_batch_http_request(callback=done)
    for fid in ids:
        batch.add(svc.files().delete(fileId=fid))
    batch.add(svc.files().delete(fileId="missing-id-123"))
    batch.execute()
    assert sum(e is None for e in results.values()) == 5
    errs = [e for e in results.values() if e is not None]
    assert len(errs) == 1 and errs[0].status_code == 404
    assert emulator.state.all_files() == []
    assert emulator.counters["ops"]["batch"] == 1 and emulator.counters["ops"]["files.delete"] == 6


# ---------------------------------------------------------------------------- limits and faults


def test_quota_exceeded(svc, emulator):
    emulator.configure(quota_limit=1000)
    put(svc, "fits", b"x" * 600)
    with pytest.raises(HttpError) as info:
        put(svc, "too-big", b"x" * 600)
    assert info.value.status_code == 403 and reason(info.value) == "storageQuotaExceeded"
    with pytest.raises(HttpError) as info:
        finish(resumable(svc, "too-big-resumable", b"x" * 600))
    assert reason(info.value) == "storageQuotaExceeded"
    quota = svc.about().get(fields="storageQuota").execute()["storageQuota"]
    assert quota["limit"] == "1000" and quota["usage"] == "600"
    assert [f["name"] for f in emulator.state.all_files()] == ["fits"]


def test_bad_token_is_401(emulator):
    bad = make_service(emulator.url, "wrong-token")
    with pytest.raises(RefreshError):  # google-auth tries to refresh on 401 and cannot
        bad.files().list().execute()
    resp = requests.get(f"{emulator.url}drive/v3/files")
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"]["errors"][0]["reason"] == "authError"


def test_write_rate_limit(svc, emulator):
    emulator.configure(write_rate=0.5, write_burst=3)
    for i in range(3):
        svc.files().create(body={"name": f"ok{i}"}).execute()
    with pytest.raises(HttpError) as info:
        svc.files().create(body={"name": "too-fast"}).execute()
    assert info.value.status_code == 403 and reason(info.value) == "userRateLimitExceeded"
    svc.files().list().execute()  # reads are not writes
    assert emulator.counters["rate_limited"] == 1 and emulator.counters["creates"] == 3


def test_max_children(svc, emulator):
    emulator.configure(max_children=2)
    folder = mkdir(svc, "small")
    put(svc, "1", b"", parent=folder)
    put(svc, "2", b"", parent=folder)
    with pytest.raises(HttpError) as info:
        put(svc, "3", b"", parent=folder)
    assert reason(info.value) == "numChildrenInNonRootLimitExceeded"
    for i in range(3):
        put(svc, f"root{i}", b"")  # the root has no such limit


@pytest.mark.parametrize("kind,status,why", [
    ("500", 500, "backendError"), ("503", 503, "backendError"), ("429", 429, "rateLimitExceeded"),
    ("403rate", 403, "rateLimitExceeded"), ("403daily", 403, "dailyLimitExceeded"),
    ("quota", 403, "storageQuotaExceeded"),
])
def test_injected_faults(svc, emulator, kind, status, why):
    emulator.inject(kind, count=2, method="POST")
    svc.files().list().execute()  # a GET does not match
    for _ in range(2):
        with pytest.raises(HttpError) as info:
            svc.files().create(body={"name": "x"}).execute()
        assert info.value.status_code == status and reason(info.value) == why
        assert info.value.resp["content-type"].startswith("application/json")
    svc.files().create(body={"name": "x"}).execute()
    assert emulator.counters["faults"] == 2


def test_clean_drop_is_resent_by_httplib2(svc, emulator):
    put(svc, "there", b"1")
    emulator.inject("drop", method="GET")
    assert names(svc, "trashed = false") == ["there"]  # httplib2 re-sent it on a new connection
    assert emulator.counters["faults"] == 1 and emulator.counters["ops"]["files.list"] == 2


def test_injected_401_and_drop(emulator):
    session = requests.Session()
    auth = {"Authorization": f"Bearer {emulator.token}"}
    emulator.inject("401", path_contains="files")
    assert session.get(f"{emulator.url}drive/v3/files", headers=auth).status_code == 401
    emulator.inject("drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(f"{emulator.url}drive/v3/files", headers=auth, json={"name": "x"})
    assert emulator.state.all_files() == []


def test_random_faults_are_seeded_and_spare_the_control_plane(emulator):
    client = EmulatorClient(emulator.url)
    auth = {"Authorization": f"Bearer {emulator.token}"}

    def run() -> list:
        client.reset()
        client.configure(fail_rate=0.5, fault_kinds=["500", "429"], seed=7)
        codes = [requests.get(f"{emulator.url}drive/v3/files", headers=auth).status_code
                 for _ in range(30)]
        assert client.counters["faults"] == sum(c != 200 for c in codes)
        return codes

    first = run()
    assert set(first) == {200, 500, 429}
    assert run() == first
    assert client.all_files() == []  # control requests never fail


def test_latency_and_bandwidth(svc, emulator):
    data = os.urandom(200 * 1024)
    fid = put(svc, "slow.bin", data)["id"]
    emulator.configure(bandwidth=1024 * 1024, latency=0.05)
    t0 = time.monotonic()
    assert download(svc, fid, chunksize=len(data)) == data
    took = time.monotonic() - t0
    assert 0.2 < took < 2.0  # 0.05 s latency + ~0.2 s of bytes at 1 MiB/s
    assert emulator.counters["bytes_out"] >= len(data)


def test_concurrent_clients(emulator):
    root = make_service(emulator.url, emulator.token)
    folder = mkdir(root, "par")
    errors: list = []

    def work(n: int) -> None:
        try:
            s = make_service(emulator.url, emulator.token)
            for i in range(15):
                put(s, f"t{n}-{i}", f"{n}:{i}".encode(), parent=folder)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(names(root, f"'{folder}' in parents")) == 120


# ---------------------------------------------------------------------------- lifecycle


def test_persistence_across_restart(tmp_path):
    emu = Emulator(token="p", data_dir=tmp_path / "drive")
    svc = make_service(emu.start(), "p")
    folder = mkdir(svc, "kept")
    fid = put(svc, "k.bin", b"persist me", parent=folder)["id"]
    gone = put(svc, "gone", b"x")["id"]
    svc.files().delete(fileId=gone).execute()
    before = emu.state.all_files()
    emu.stop()
    again = Emulator(token="p", data_dir=tmp_path / "drive")
    svc2 = make_service(again.start(), "p")
    try:
        assert again.state.all_files() == before
        assert download(svc2, fid) == b"persist me"
        assert names(svc2, f"'{folder}' in parents") == ["k.bin"]
        put(svc2, "after", b"y")  # journal replay left the indexes usable
    finally:
        again.stop()
    assert (tmp_path / "drive" / "metadata.json").exists()


def test_a_crash_replays_the_journal_written_after_the_snapshot(tmp_path):
    """No clean stop: the state is the start's snapshot plus the journal lines after
    it (creates, a rename into another folder, a delete), replayed in order."""
    import shutil

    emu = Emulator(token="p", data_dir=tmp_path / "drive")
    svc = make_service(emu.start(), "p")
    try:
        a, b = mkdir(svc, "a"), mkdir(svc, "b")
        moved = put(svc, "m.bin", b"moved", parent=a)["id"]
        put(svc, "z.bin", b"z", parent=b)
        gone = put(svc, "gone", b"x", parent=b)["id"]
        svc.files().update(fileId=moved, addParents=b, removeParents=a,
                           body={"name": "c.bin"}).execute()
        svc.files().delete(fileId=gone).execute()
        before = emu.state.all_files()
        shutil.copytree(tmp_path / "drive", tmp_path / "crashed")   # as a kill would leave it
    finally:
        emu.stop()
    assert (tmp_path / "crashed" / "journal.jsonl").read_text().count("\n") >= 6
    again = Emulator(token="p", data_dir=tmp_path / "crashed")
    svc2 = make_service(again.start(), "p")
    try:
        assert again.state.all_files() == before
        assert names(svc2, f"'{b}' in parents") == ["c.bin", "z.bin"]
        assert names(svc2, f"'{a}' in parents") == []
        assert download(svc2, moved) == b"moved"
        put(svc2, "after", b"y", parent=a)  # the indexes are usable
        assert names(svc2, f"'{a}' in parents") == ["after"]
    finally:
        again.stop()


def test_cli_serves_in_a_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("DRIVESYNC_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "drivesync", "emulator", "--port", "0",
                             "--token", "cli-token", "--data-dir", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.strip().rsplit(" ", 1)[1]
        example = proc.stdout.readline() + proc.stdout.readline()
        assert f"DRIVESYNC_API_ENDPOINT={url}" in example
        svc = make_service(url, "cli-token")
        mkdir(svc, "from-cli")
        client = EmulatorClient(url)
        assert [f["name"] for f in client.all_files()] == ["from-cli"]
        assert client.counters["creates"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize("tail", [b"\r", b"\n", b"\r\n", b"\n\r", b"\r\n\r\n"])
def test_multipart_keeps_trailing_line_breaks(svc, tail):
    data = b"payload" + tail
    fid = put(svc, "t.bin", data)["id"]
    assert download(svc, fid) == data


def test_multipart_with_crlf_framing(emulator):
    body = (b"--XX\r\nContent-Type: application/json\r\n\r\n{\"name\": \"c.bin\"}\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\n\r\nab\r\n\r\n--XX--\r\n")
    resp = requests.post(f"{emulator.url}upload/drive/v3/files?uploadType=multipart&fields=size",
                         data=body, headers={"Authorization": f"Bearer {emulator.token}",
                                             "Content-Type": "multipart/related; boundary=XX"})
    assert resp.status_code == 200 and resp.json() == {"size": "4"}


# ---------------------------------------------------------------------------- lost answers


def test_lost_answer_processes_the_create_then_drops_the_connection(emulator):
    auth = {"Authorization": f"Bearer {emulator.token}"}
    emulator.inject("lost", method="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{emulator.url}drive/v3/files", headers=auth,
                      json={"name": "made", "id": "1abcdefghijklmnopqrstuvwxyz"})
    assert [f["name"] for f in emulator.state.all_files()] == ["made"]   # it took effect
    again = requests.post(f"{emulator.url}drive/v3/files", headers=auth,
                          json={"name": "made", "id": "1abcdefghijklmnopqrstuvwxyz"})
    assert again.status_code == 409
    assert again.json()["error"]["errors"][0]["reason"] == "fileIdInUse"


def test_lost_answer_inside_a_batch_is_an_error_for_that_part_only(svc, emulator):
    ids = [put(svc, f"f{i}", b"x")["id"] for i in range(3)]
    emulator.inject("lost", method="DELETE")
    results: dict = {}
    batch = svc.new_batch_http_request(
        callback=lambda rid, resp, exc: results.__setitem__(rid, exc))
    for fid in ids:
        batch.add(svc.files().delete(fileId=fid), request_id=fid)
    batch.execute()
    assert isinstance(results[ids[0]], HttpError) and results[ids[0]].status_code == 503
    assert results[ids[1]] is None and results[ids[2]] is None
    assert emulator.state.all_files() == []          # the "failed" delete happened anyway


def test_completed_resumable_session_answers_a_status_query_with_the_file(emulator):
    """Drive keeps a finished session: after a lost final answer, asking gets 200 + file."""
    auth = {"Authorization": f"Bearer {emulator.token}"}
    data = os.urandom(1000)
    session = requests.post(f"{emulator.url}upload/drive/v3/files?uploadType=resumable"
                            "&fields=id,md5Checksum", headers=auth, json={"name": "r.bin"})
    emulator.inject("lost", method="PUT")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.put(session.headers["Location"], data=data,
                     headers={**auth, "Content-Range": f"bytes 0-999/{len(data)}"})
    status = requests.put(session.headers["Location"],
                          headers={**auth, "Content-Range": f"bytes */{len(data)}"})
    assert status.status_code == 200
    assert status.json()["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert [f["id"] for f in emulator.state.all_files()] == [status.json()["id"]]


@pytest.mark.parametrize("size", [1000, 3 * CHUNK + 7], ids=["multipart", "resumable"])
def test_drive_upload_through_lost_answers_lands_exactly_one_file(drive_remote, emulator,
                                                                  tmp_path, size):
    """The create is processed, its answer lost; httplib2 or the pacer re-sends it with
    the same pre-generated id, meets 409 (or the finished session) and adopts the file."""
    data = os.urandom(size)
    src = tmp_path / "w.pt"
    src.write_bytes(data)
    drive_remote.mkdir("ckpt")
    before = emulator.counters["faults"]
    emulator.inject("lost", count=3, method="POST" if size < CHUNK else "PUT")
    entry = drive_remote.upload(src, "ckpt/w.pt")
    assert emulator.counters["faults"] - before == 3
    files = [f for f in emulator.state.all_files() if f["name"] == "w.pt"]
    assert len(files) == 1 and files[0]["id"] == entry.id
    assert files[0]["md5Checksum"] == hashlib.md5(data).hexdigest() == entry.md5
    emulator.inject("lost", method="POST")
    assert drive_remote.mkdir("ckpt/sub").id == next(
        f["id"] for f in emulator.state.all_files() if f["name"] == "sub")
    assert sum(f["name"] == "sub" for f in emulator.state.all_files()) == 1
