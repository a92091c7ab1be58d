"""Deleting (or trashing) many Drive items in batch requests of up to 100 calls.

One batch is one HTTP request; the pacer retries the batch, but only with the
inner calls that failed retryably. A 404 on a retried call means an earlier
attempt had landed. Kept apart from drive.py, which resolves what to delete.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..errors import DriveSyncError, NotFound, RemoteError, TransientError, is_retryable
from ..types import Entry
from .drive_errors import classify

BATCH_MAX = 100                # Drive's limit of calls per batch


def delete_batch(service: Callable[[], Any], call: Callable[..., Any], entries: list[Entry], *,
                 permanent: bool, endpoint: str) -> dict[str, DriveSyncError]:
    """Delete ``entries`` (at most BATCH_MAX) in one batch; {path: error} of the failed."""
    pending = {str(i): e for i, e in enumerate(entries)}
    tries = dict.fromkeys(pending, 0)
    failed: dict[str, DriveSyncError] = {}

    def attempt() -> None:
        svc = service()
        answers: dict[str, Optional[DriveSyncError]] = {}

        def on_answer(request_id: str, _response: Any, exc: Optional[Exception]) -> None:
            if exc is None:
                answers[request_id] = None
                return
            err = classify(exc, endpoint=endpoint, what="delete")
            answers[request_id] = err or RemoteError(f"delete failed: {exc}")

        batch = svc.new_batch_http_request(callback=on_answer)
        for rid, e in pending.items():
            tries[rid] += 1
            files = svc.files()
            batch.add(files.delete(fileId=e.id, supportsAllDrives=True) if permanent else
                      files.update(fileId=e.id, body={"trashed": True}, fields="id",
                                   supportsAllDrives=True),
                      request_id=rid)
        batch.execute()
        retry: Optional[DriveSyncError] = None
        for rid in list(pending):
            err = answers.get(rid, TransientError("no answer in the batch response"))
            if err is None or isinstance(err, NotFound) and tries[rid] > 1:
                del pending[rid]
            elif is_retryable(err):
                retry = retry or err
            else:
                failed[pending.pop(rid).path] = err
        if retry is not None:
            raise retry

    try:
        call(attempt, what=f"batch delete of {len(entries)} items")
    except DriveSyncError as exc:
        for e in pending.values():
            failed[e.path] = exc
    return failed
