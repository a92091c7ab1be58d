"""Google's JSON error envelope, so the real client's own error parsing runs.

googleapiclient's ``HttpError`` reads ``error.message`` into ``.reason`` and the
``error.errors`` list into ``.error_details``; drivesync's Drive remote then
classifies by ``error_details[0]["reason"]``. Messages copy Drive's wording.
"""

from __future__ import annotations

import json
from typing import Optional


class ApiError(Exception):
    """Raised anywhere in the emulator; the HTTP layer turns it into the envelope."""

    def __init__(self, code: int, reason: str, message: str, *, domain: str = "global",
                 location: Optional[str] = None, location_type: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type

    def envelope(self) -> dict:
        detail = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location is not None:
            detail["location"] = self.location
            detail["locationType"] = self.location_type or "parameter"
        return {"error": {"code": self.code, "message": self.message, "errors": [detail]}}

    def body(self) -> bytes:
        return json.dumps(self.envelope()).encode()


def not_found(file_id: str) -> ApiError:
    return ApiError(404, "notFound", f"File not found: {file_id}.",
                    location="fileId", location_type="parameter")


def bad_request(message: str, *, reason: str = "invalid",
                location: Optional[str] = None) -> ApiError:
    return ApiError(400, reason, message, location=location,
                    location_type="parameter" if location else None)


def auth_error() -> ApiError:
    return ApiError(401, "authError", "Invalid Credentials",
                    location="Authorization", location_type="header")


def duplicate_id(file_id: str) -> ApiError:
    """Drive's answer to a create with an id that exists (reason and wording as Drive's)."""
    return ApiError(409, "fileIdInUse", "A file already exists with the provided ID.")


def quota_exceeded() -> ApiError:
    return ApiError(403, "storageQuotaExceeded",
                    "The user's Drive storage quota has been exceeded.", domain="usageLimits")


def too_many_children() -> ApiError:
    return ApiError(403, "numChildrenInNonRootLimitExceeded",
                    "The limit for this folder's number of children (files and folders) "
                    "has been exceeded.")


def user_rate_limited() -> ApiError:
    return ApiError(403, "userRateLimitExceeded", "User rate limit exceeded.",
                    domain="usageLimits")


def rate_limited_403() -> ApiError:
    return ApiError(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def rate_limited_429() -> ApiError:
    return ApiError(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")


def daily_limit() -> ApiError:
    return ApiError(403, "dailyLimitExceeded", "Daily Limit Exceeded", domain="usageLimits")


def backend_error(code: int = 500) -> ApiError:
    message = "Backend Error" if code == 500 else "Service Unavailable"
    return ApiError(code, "backendError", message)


def session_expired() -> ApiError:
    return ApiError(404, "notFound", "The upload session was not found or has expired.",
                    location="upload_id", location_type="parameter")
