"""What the object stores' error mappings share (S3, GCS): the order of the questions
and the failures every client library lets through unchanged.

Each store answers only what its own service says (an S3 ``Code``, a GCS status
and reason) through ``service``; the pacer then retries by the class returned.
The Drive remote (drive_errors.py) differs on purpose: an error it cannot place
is a bug and is re-raised, not a RemoteError.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Collection, Optional, Sequence

from ..errors import DriveSyncError, NotFound, RemoteError, TransientError

#: a service's codes and the error each set means, asked in order (first match wins)
Table = Sequence[tuple[Collection[str], type[DriveSyncError]]]


def kind_for(code: str, table: Table) -> Optional[type[DriveSyncError]]:
    """The error class ``table`` gives ``code``, or None."""
    for codes, kind in table:
        if code in codes:
            return kind
    return None


def map_failure(exc: BaseException, what: str,
                service: Callable[[BaseException, str], Optional[DriveSyncError]], *,
                transient: tuple[type[BaseException], ...] = ()) -> DriveSyncError:
    """``exc`` as one of our errors: ours pass unchanged; then what the service's
    answer says; a missing path is NotFound, a broken connection (or one of the
    store's ``transient`` classes) a TransientError, anything else a RemoteError
    naming its type (never retried)."""
    if isinstance(exc, DriveSyncError):
        return exc
    said = service(exc, what)
    if said is not None:
        return said
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: not found")
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError) + transient):
        return TransientError(f"{what}: {exc}")
    return RemoteError(f"{what}: {type(exc).__name__}: {exc}")
