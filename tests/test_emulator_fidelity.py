"""What real Drive clients send, on the wire: each test replays the raw HTTP exchange
of a client other than google-api-python-client (rclone's resumable uploads, moves
and shortcuts; Drive's own resumable-upload guide) and, where it applies, the same
call through the real google-api-python-client.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import google.oauth2.credentials
import pytest
import requests
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseUpload

CHUNK = 256 * 1024
FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
UPLOAD_FIELDS = "id,name,size,md5Checksum,parents,quotaBytesUsed,version"


@pytest.fixture
def svc(drive_service):
    return drive_service


@pytest.fixture
def http(emulator):
    """A requests session that sends what rclone sends (its own bearer token)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {emulator.token}"
    yield session
    session.close()


def content_of(emulator, file_id: str) -> bytes:
    resp = requests.get(f"{emulator.url}drive/v3/files/{file_id}?alt=media",
                        headers={"Authorization": f"Bearer {emulator.token}"})
    assert resp.status_code == 200, resp.text
    return resp.content


def initiate(http, emulator, *, method="POST", file_id=None, meta=None, size=None) -> str:
    """rclone's initiation: JSON metadata, X-Upload-Content-Type, a length when known."""
    url = f"{emulator.url}upload/drive/v3/files"
    if file_id:
        url += f"/{file_id}"
    headers = {"Content-Type": "application/json; charset=UTF-8",
               "X-Upload-Content-Type": "application/octet-stream"}
    if size is not None:
        headers["X-Upload-Content-Length"] = str(size)
    resp = http.request(method, url, data=json.dumps(meta or {}), headers=headers, params={
        "alt": "json", "uploadType": "resumable", "fields": UPLOAD_FIELDS,
        "supportsAllDrives": "true"})
    assert resp.status_code == 200, resp.text
    return resp.headers["Location"]


def send(http, uri: str, data: bytes, start: int, total: str, method="POST"):
    """One chunk as rclone's transferChunk sends it (``bytes */T`` when empty)."""
    rng = (f"bytes {start}-{start + len(data) - 1}/{total}" if data else f"bytes */{total}")
    return http.request(method, uri, data=data, headers={
        "Content-Range": rng, "Content-Type": "application/octet-stream"})


# ---------------------------------------------------------------------------- resumable


def test_rclone_chunks_are_posted_to_the_session_uri(http, emulator):
    data = os.urandom(2 * CHUNK + 100)
    uri = initiate(http, emulator, meta={"name": "big.bin"}, size=len(data))
    first = send(http, uri, data[:CHUNK], 0, str(len(data)))
    assert first.status_code == 308 and first.headers["Range"] == f"bytes=0-{CHUNK - 1}"
    second = send(http, uri, data[CHUNK:2 * CHUNK], CHUNK, str(len(data)))
    assert second.status_code == 308
    last = send(http, uri, data[2 * CHUNK:], 2 * CHUNK, str(len(data)))
    assert last.status_code == 200, last.text
    doc = last.json()
    assert doc["md5Checksum"] == hashlib.md5(data).hexdigest() and doc["name"] == "big.bin"
    assert content_of(emulator, doc["id"]) == data
    assert emulator.counters["ops"]["upload.chunk"] == 3


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_stream_of_unknown_total_names_it_in_the_last_chunk(http, emulator, method):
    """``bytes A-B/*`` until the end; the last chunk says the total."""
    data = os.urandom(3 * CHUNK + 7)
    uri = initiate(http, emulator, meta={"name": "stream.bin"})
    for start in (0, CHUNK, 2 * CHUNK):
        resp = send(http, uri, data[start:start + CHUNK], start, "*", method)
        assert resp.status_code == 308, resp.text
        assert resp.headers["Range"] == f"bytes=0-{start + CHUNK - 1}"
    status = send(http, uri, b"", 0, "*", method)  # where are we? (bytes */*)
    assert status.status_code == 308 and status.headers["Range"] == f"bytes=0-{3 * CHUNK - 1}"
    last = send(http, uri, data[3 * CHUNK:], 3 * CHUNK, str(len(data)), method)
    assert last.status_code == 200, last.text
    assert content_of(emulator, last.json()["id"]) == data


def test_a_stream_that_ends_on_a_chunk_boundary_ends_with_an_empty_chunk(http, emulator):
    data = os.urandom(2 * CHUNK)
    uri = initiate(http, emulator, meta={"name": "even.bin"})
    assert send(http, uri, data[:CHUNK], 0, "*").status_code == 308
    assert send(http, uri, data[CHUNK:], CHUNK, "*").status_code == 308
    done = send(http, uri, b"", 0, str(len(data)))  # rclone: bytes */TOTAL, no body
    assert done.status_code == 200, done.text
    assert content_of(emulator, done.json()["id"]) == data


def test_resumable_update_replaces_content_and_keeps_a_revision(http, svc, emulator):
    old = os.urandom(1000)
    created = svc.files().create(body={"name": "w.bin"}, media_body=MediaIoBaseUpload(
        io.BytesIO(old), mimetype="application/octet-stream"), fields=UPLOAD_FIELDS).execute()
    new = os.urandom(CHUNK + 10)
    uri = initiate(http, emulator, method="PATCH", file_id=created["id"], size=len(new),
                   meta={"modifiedTime": "2024-01-02T03:04:05.000Z"})
    assert created["id"] in uri
    assert send(http, uri, new[:CHUNK], 0, str(len(new))).status_code == 308
    done = send(http, uri, new[CHUNK:], CHUNK, str(len(new)))
    assert done.status_code == 200, done.text
    doc = done.json()
    assert doc["id"] == created["id"] and doc["md5Checksum"] == hashlib.md5(new).hexdigest()
    assert int(doc["quotaBytesUsed"]) == len(old) + len(new)  # the old bytes: a revision
    assert content_of(emulator, doc["id"]) == new
    # The same through google-api-python-client (PATCH, then PUT chunks).
    newer = os.urandom(CHUNK + 20)
    request = svc.files().update(fileId=created["id"], fields=UPLOAD_FIELDS,
                                 media_body=MediaIoBaseUpload(
                                     io.BytesIO(newer), mimetype="application/octet-stream",
                                     chunksize=CHUNK, resumable=True))
    response = None
    while response is None:
        _status, response = request.next_chunk()
    assert response["md5Checksum"] == hashlib.md5(newer).hexdigest()
    assert [f["id"] for f in emulator.state.all_files()] == [created["id"]]


def test_resumable_update_of_a_missing_file_is_404(http, emulator):
    resp = http.patch(f"{emulator.url}upload/drive/v3/files/1nothere0000000000",
                      params={"uploadType": "resumable"}, json={})
    assert resp.status_code == 404


# ---------------------------------------------------------------------------- session URIs


def test_chunks_without_authorization_are_accepted(http, emulator):
    """Drive's guide sends chunks with no Authorization: the session URI is the credential."""
    data = os.urandom(CHUNK + 3)
    uri = initiate(http, emulator, meta={"name": "anon.bin"}, size=len(data))
    bare = requests.Session()  # no token at all
    assert send(bare, uri, data[:CHUNK], 0, str(len(data)), "PUT").status_code == 308
    status = bare.put(uri, headers={"Content-Range": f"bytes */{len(data)}"})
    assert status.status_code == 308
    wrong = send(requests.Session(), uri, b"", 0, str(len(data)), "PUT")
    wrong_token = bare.put(uri, headers={"Content-Range": f"bytes */{len(data)}",
                                         "Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 308 and wrong_token.status_code == 401
    done = send(bare, uri, data[CHUNK:], CHUNK, str(len(data)), "PUT")
    assert done.status_code == 200 and content_of(emulator, done.json()["id"]) == data
    # Everything else still needs the token, initiation included.
    assert bare.post(f"{emulator.url}upload/drive/v3/files?uploadType=resumable",
                     json={"name": "x"}).status_code == 401
    assert bare.get(f"{emulator.url}drive/v3/files").status_code == 401


def test_sessions_expire_after_session_ttl(http, emulator):
    assert emulator.settings()["session_ttl"] == 7 * 24 * 3600  # Drive: about a week
    emulator.configure(session_ttl=0.2)
    data = os.urandom(CHUNK + 1)
    uri = initiate(http, emulator, meta={"name": "late.bin"}, size=len(data))
    assert send(http, uri, data[:CHUNK], 0, str(len(data))).status_code == 308
    time.sleep(0.3)
    late = send(http, uri, data[CHUNK:], CHUNK, str(len(data)))
    assert late.status_code == 404 and late.json()["error"]["errors"][0]["reason"] == "notFound"
    assert http.put(uri, headers={"Content-Range": "bytes */*"}).status_code == 404
    assert emulator.state.all_files() == []
    with pytest.raises(ValueError):
        emulator.configure(session_ttl=0)
    emulator.reset()
    assert emulator.settings()["session_ttl"] == 7 * 24 * 3600


class ExpireOnce:
    """After the first chunk: later sessions live a week, then wait out the current one."""

    def __init__(self, emu, wait: float):
        self.emu, self.wait, self.done = emu, wait, False

    def on_start(self, **_):
        pass

    def on_progress(self, *, files=0, bytes=0):
        if not self.done:
            self.done = True
            self.emu.configure(session_ttl=7 * 24 * 3600)
            time.sleep(self.wait)

    def on_done(self):
        pass


def test_drivesync_restarts_an_upload_whose_session_expired(drive_remote, emulator, tmp_path):
    data = os.urandom(4 * CHUNK + 5)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    emulator.configure(session_ttl=0.2)
    entry = drive_remote.upload(source, "big.bin", progress=ExpireOnce(emulator, 0.3))
    assert entry.md5 == hashlib.md5(data).hexdigest()
    assert drive_remote.stats.retries >= 1  # one new session
    live = [f for f in emulator.state.all_files() if f["mimeType"] != FOLDER]
    assert [f["md5Checksum"] for f in live] == [entry.md5]


# ---------------------------------------------------------------------------- metadata


def test_move_with_a_null_body_changes_only_the_parents(http, svc, emulator):
    """rclone moves with PATCH ?addParents=..&removeParents=.. and the JSON body null."""
    a = svc.files().create(body={"name": "a", "mimeType": FOLDER}, fields="id").execute()["id"]
    b = svc.files().create(body={"name": "b", "mimeType": FOLDER}, fields="id").execute()["id"]
    f = svc.files().create(body={"name": "f", "parents": [a]}, fields="id").execute()["id"]
    resp = http.patch(f"{emulator.url}drive/v3/files/{f}", data="null", params={
        "addParents": b, "removeParents": a, "fields": "id,name,parents"},
        headers={"Content-Type": "application/json; charset=UTF-8"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": f, "name": "f", "parents": [b]}
    for bad in ("[]", '"x"', "{"):  # anything but an object or null is still refused
        refused = http.patch(f"{emulator.url}drive/v3/files/{f}", data=bad,
                             headers={"Content-Type": "application/json"})
        assert refused.status_code == 400


def test_shortcuts_carry_their_target_and_no_bytes(http, svc, emulator):
    target = svc.files().create(body={"name": "data.zip"}, media_body=MediaIoBaseUpload(
        io.BytesIO(b"zip"), mimetype="application/zip"), fields="id").execute()["id"]
    fields = "id,name,mimeType,shortcutDetails,size,md5Checksum"
    resp = http.post(f"{emulator.url}drive/v3/files", params={"fields": fields}, json={
        "name": "link", "mimeType": SHORTCUT, "shortcutDetails": {"targetId": target}})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["shortcutDetails"] == {"targetId": target, "targetMimeType": "application/zip"}
    assert "size" not in doc and "md5Checksum" not in doc
    listed = svc.files().list(q=f"mimeType = '{SHORTCUT}'",
                              fields="files(id,shortcutDetails)").execute()["files"]
    assert listed == [{"id": doc["id"], "shortcutDetails": doc["shortcutDetails"]}]
    copied = svc.files().copy(fileId=doc["id"], body={"name": "link2"},
                              fields="shortcutDetails").execute()
    assert copied["shortcutDetails"]["targetId"] == target
    with pytest.raises(HttpError) as no_bytes:
        svc.files().get_media(fileId=doc["id"]).execute()
    assert no_bytes.value.status_code == 403


def test_shortcut_mistakes_are_refused(http, svc, emulator):
    folder = svc.files().create(body={"name": "d", "mimeType": FOLDER}, fields="id").execute()
    missing = http.post(f"{emulator.url}drive/v3/files", json={"name": "s",
                                                               "mimeType": SHORTCUT})
    assert missing.status_code == 400
    nowhere = http.post(f"{emulator.url}drive/v3/files", json={
        "name": "s", "mimeType": SHORTCUT, "shortcutDetails": {"targetId": "1nothere00000"}})
    assert nowhere.status_code == 404
    made = svc.files().create(body={"name": "s", "mimeType": SHORTCUT, "shortcutDetails": {
        "targetId": folder["id"]}}, fields="id,shortcutDetails").execute()
    assert made["shortcutDetails"]["targetMimeType"] == FOLDER
    with pytest.raises(HttpError) as moved:  # set on create only
        svc.files().update(fileId=made["id"], body={"shortcutDetails": {
            "targetId": "root"}}).execute()
    assert moved.value.status_code == 403


# ---------------------------------------------------------------------------- permissions


def test_permissions_create_list_get_update_delete(http, svc, emulator):
    file_id = svc.files().create(body={"name": "shared-data", "mimeType": FOLDER},
                                 fields="id").execute()["id"]
    perms = svc.permissions()
    made = perms.create(fileId=file_id, body={"role": "reader", "type": "user",
                                              "emailAddress": "Friend@Example.com"},
                        sendNotificationEmail=False, fields="id,role,type,emailAddress").execute()
    assert made["role"] == "reader" and made["emailAddress"] == "friend@example.com"
    again = perms.create(fileId=file_id, body={"role": "writer", "type": "user",
                                               "emailAddress": "friend@example.com"}).execute()
    assert again == {"kind": "drive#permission", "id": made["id"], "type": "user",
                     "role": "writer"}  # the same grantee: its role changes, one permission
    raw = http.post(f"{emulator.url}drive/v3/files/{file_id}/permissions",
                    json={"role": "reader", "type": "anyone"})
    assert raw.status_code == 200 and raw.json()["id"] == "anyoneWithLink"
    listed = perms.list(fileId=file_id).execute()["permissions"]
    assert [(p["role"], p["type"]) for p in listed] == [
        ("owner", "user"), ("writer", "user"), ("reader", "anyone")]
    got = perms.get(fileId=file_id, permissionId=made["id"], fields="role").execute()
    assert got == {"role": "writer"}
    assert perms.update(fileId=file_id, permissionId=made["id"],
                        body={"role": "commenter"}).execute()["role"] == "commenter"
    meta = svc.files().get(fileId=file_id, fields="shared,permissionIds").execute()
    assert meta["shared"] is True and made["id"] in meta["permissionIds"]
    perms.delete(fileId=file_id, permissionId=made["id"]).execute()
    assert http.delete(f"{emulator.url}drive/v3/files/{file_id}/permissions/anyoneWithLink"
                       ).status_code == 204
    with pytest.raises(HttpError) as gone:
        perms.get(fileId=file_id, permissionId=made["id"]).execute()
    assert gone.value.status_code == 404
    assert svc.files().get(fileId=file_id, fields="shared").execute() == {"shared": False}


@pytest.mark.parametrize("body, query, status, reason", [
    ({"type": "user", "emailAddress": "a@b.c"}, {}, 400, "required"),            # no role
    ({"role": "editor", "type": "user", "emailAddress": "a@b.c"}, {}, 400, "invalid"),
    ({"role": "reader"}, {}, 400, "required"),                                    # no type
    ({"role": "reader", "type": "everyone"}, {}, 400, "invalid"),
    ({"role": "reader", "type": "user"}, {}, 400, "required"),                    # no email
    ({"role": "reader", "type": "group"}, {}, 400, "required"),
    ({"role": "reader", "type": "domain"}, {}, 400, "required"),                  # no domain
    ({"role": "organizer", "type": "user", "emailAddress": "a@b.c"}, {}, 403,
     "invalidSharingRequest"),                                    # shared drives only
    ({"role": "owner", "type": "user", "emailAddress": "a@b.c"}, {}, 403, "forbidden"),
    ({"role": "owner", "type": "user", "emailAddress": "a@b.c"}, {"transferOwnership": "true"},
     403, "consentRequiredForOwnershipTransfer"),
])
def test_permission_validation(http, svc, emulator, body, query, status, reason):
    file_id = svc.files().create(body={"name": "f"}, fields="id").execute()["id"]
    resp = http.post(f"{emulator.url}drive/v3/files/{file_id}/permissions", json=body,
                     params=query)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["errors"][0]["reason"] == reason
    assert svc.files().get(fileId=file_id, fields="shared").execute() == {"shared": False}


def test_shares_answer_q_in_readers_and_writers(http, svc, emulator):
    shared = svc.files().create(body={"name": "shared"}, fields="id").execute()["id"]
    public = svc.files().create(body={"name": "public"}, fields="id").execute()["id"]
    svc.files().create(body={"name": "mine"}).execute()
    svc.permissions().create(fileId=shared, body={"role": "writer", "type": "user",
                                                  "emailAddress": "friend@example.com"}).execute()
    svc.permissions().create(fileId=public, body={"role": "reader", "type": "anyone"}).execute()

    def names(q):
        resp = http.get(f"{emulator.url}drive/v3/files", params={"q": q, "fields": "files(name)"})
        assert resp.status_code == 200, resp.text
        return sorted(f["name"] for f in resp.json()["files"])

    assert names("'friend@example.com' in writers") == ["shared"]
    assert names("'friend@example.com' in readers") == ["shared"]
    assert names("'friend@example.com' in owners") == []
    assert names("'anyone' in readers") == ["public"]
    assert names("'me' in owners") == ["mine", "public", "shared"]


def test_the_owner_permission_cannot_be_deleted(http, svc, emulator):
    file_id = svc.files().create(body={"name": "f"}, fields="id").execute()["id"]
    owner = svc.permissions().list(fileId=file_id).execute()["permissions"][0]
    assert owner["role"] == "owner"
    resp = http.delete(f"{emulator.url}drive/v3/files/{file_id}/permissions/{owner['id']}")
    assert resp.status_code == 403
    assert resp.json()["error"]["errors"][0]["reason"] == "cannotDeletePermission"
    missing = http.get(f"{emulator.url}drive/v3/files/1nothere00000/permissions")
    assert missing.status_code == 404


def test_shortcuts_and_shares_survive_a_restart(tmp_path):
    from drivesync.emulator import Emulator

    def client(emu):
        doc = json.loads(get_static_doc("drive", "v3"))
        doc["rootUrl"] = doc["mtlsRootUrl"] = emu.url
        return build_from_document(doc, credentials=google.oauth2.credentials.Credentials("t"))

    with Emulator(token="t", data_dir=tmp_path / "d") as emu:
        drive = client(emu)
        target = drive.files().create(body={"name": "t"}, fields="id").execute()["id"]
        link = drive.files().create(body={"name": "l", "mimeType": SHORTCUT, "shortcutDetails": {
            "targetId": target}}, fields="id").execute()["id"]
        drive.permissions().create(fileId=target, body={"role": "reader", "type": "anyone"}
                                   ).execute()
    with Emulator(token="t", data_dir=tmp_path / "d") as emu:
        drive = client(emu)
        assert drive.files().get(fileId=link, fields="shortcutDetails").execute()[
            "shortcutDetails"]["targetId"] == target
        assert drive.files().get(fileId=target, fields="permissionIds").execute()[
            "permissionIds"] == ["0000000001", "anyoneWithLink"]


def test_add_file_seeds_what_a_client_would_not_make(emulator):
    """The control plane's add_file: same-named folders, bytes, past the write limit."""
    from drivesync.emulator import EmulatorClient

    emulator.configure(write_rate=0.001, write_burst=1)
    client = EmulatorClient(emulator.url)
    try:
        first = emulator.add_file({"name": "dup", "mimeType": FOLDER})
        second = client.add_file({"name": "dup", "mimeType": FOLDER})
        data = os.urandom(300)
        inside = client.add_file({"name": "a.bin", "parents": [second["id"]]}, data)
        assert first["id"] != second["id"] and inside["parents"] == [second["id"]]
        assert inside["md5Checksum"] == hashlib.md5(data).hexdigest()
        assert content_of(emulator, inside["id"]) == data
        with pytest.raises(ValueError, match="400"):
            client._call("POST", "add_file", {"name": "x", "data_base64": "%%%"})
        with pytest.raises(ValueError, match="404"):  # an unknown parent, as files.create
            client.add_file({"name": "x", "parents": ["1nothere00000"]})
    finally:
        client.close()
    assert emulator.counters["rate_limited"] == 0
