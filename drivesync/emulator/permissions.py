"""``permissions.create/list/get/update/delete``: sharing a file or folder.

The emulator has one user, who owns every item; a share is a permission
record on the item, validated as the v3 reference describes the Permission
resource (a ``role`` and a ``type``; an ``emailAddress`` for a user or group,
a ``domain`` for a domain). Nobody else can log in, so a share changes what
the API reports (``permissions``, ``shared``), not who may read.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from . import errors
from .errors import ApiError
from .query import (
    PERMISSION_LIST_SCHEMA,
    PERMISSION_SCHEMA,
    apply_fields,
    check_fields,
    parse_fields,
)
from .records import OWNER_PERMISSION_ID, FileRecord, owner_permission
from .wire import Request, Response, json_response

if TYPE_CHECKING:
    from .api import Api

ROLES = ("owner", "organizer", "fileOrganizer", "writer", "commenter", "reader")
TYPES = ("user", "group", "domain", "anyone")
SHARED_DRIVE_ROLES = ("organizer", "fileOrganizer")
DEFAULT_FIELDS = "kind,id,type,role"
DEFAULT_LIST_FIELDS = "kind,nextPageToken,permissions(kind,id,type,role)"


def _mask(req: Request, default: str, schema: Dict[str, Any]) -> Any:
    return check_fields(parse_fields(req.query.get("fields") or default), schema)


def _answer(req: Request, perm: dict) -> Response:
    return json_response(apply_fields(perm, _mask(req, DEFAULT_FIELDS, PERMISSION_SCHEMA)))


def _one_of(value: Any, choices: Any, field: str) -> str:
    """A required enum field of the permission body, as Drive checks it (400 either way)."""
    if value is None:
        raise errors.bad_request(f"The permission {field} field is required.",
                                 reason="required", location=f"permission.{field}")
    if value not in choices:
        raise errors.bad_request(f"Invalid permission {field}: {value}. Expected one of "
                                 f"{', '.join(choices)}.", location=f"permission.{field}")
    return value


def _check_role(role: Any, req: Request) -> str:
    role = _one_of(role, ROLES, "role")
    if role in SHARED_DRIVE_ROLES:
        raise ApiError(403, "invalidSharingRequest",
                       f"The role {role} is only valid for items in shared drives.")
    if role == "owner":
        if req.query.get("transferOwnership", "").lower() != "true":
            raise ApiError(403, "forbidden", "The transferOwnership parameter must be "
                           "enabled when the permission role is 'owner'.")
        # What Drive answers a consumer account: ownership moves only after the
        # new owner accepts, which nobody can do here.
        raise ApiError(403, "consentRequiredForOwnershipTransfer",
                       "Consent is required to transfer ownership of a file to another user.")
    return role


def _grantee(body: dict) -> Dict[str, Any]:
    """The permission's ``type`` and the address its type requires, checked."""
    kind = _one_of(body.get("type"), TYPES, "type")
    if kind in ("user", "group"):
        email = body.get("emailAddress")
        if not isinstance(email, str) or "@" not in email:
            raise errors.bad_request(f"A {kind} permission needs an emailAddress.",
                                     reason="required", location="permission.emailAddress")
        return {"type": kind, "emailAddress": email.strip().lower()}
    if kind == "domain":
        domain = body.get("domain")
        if not isinstance(domain, str) or not domain.strip():
            raise errors.bad_request("A domain permission needs a domain.", reason="required",
                                     location="permission.domain")
        return {"type": kind, "domain": domain.strip().lower(),
                "allowFileDiscovery": bool(body.get("allowFileDiscovery", False))}
    return {"type": kind, "allowFileDiscovery": bool(body.get("allowFileDiscovery", False))}


def _permission_id(grantee: Dict[str, Any]) -> str:
    """Stable per grantee, as Drive's: the same user has the same id on every item."""
    if grantee["type"] == "anyone":
        return "anyone" if grantee["allowFileDiscovery"] else "anyoneWithLink"
    who = grantee.get("emailAddress") or grantee.get("domain") or ""
    return str(int(hashlib.md5(f"{grantee['type']}:{who}".encode()).hexdigest()[:15], 16))


def _find(rec: FileRecord, permission_id: str) -> Optional[dict]:
    return next((p for p in rec.permissions if p["id"] == permission_id), None)


def _changeable(rec: FileRecord, permission_id: str, *, owner: ApiError) -> dict:
    """The granted permission ``permission_id`` of ``rec``, to change or remove: the
    owner's never (``owner`` is how Drive refuses it), an unknown id is a 404."""
    if permission_id == OWNER_PERMISSION_ID:
        raise owner
    perm = _find(rec, permission_id)
    if perm is None:
        raise _not_found(permission_id)
    return perm


def _not_found(permission_id: str) -> ApiError:
    return ApiError(404, "notFound", f"Permission not found: {permission_id}.",
                    location="permissionId", location_type="parameter")


def _no_expiry(body: dict) -> None:
    if "expirationTime" in body:
        raise errors.bad_request("The emulator does not support expiring permissions.",
                                 location="permission.expirationTime")


def create(api: Api, req: Request, file_id: str) -> Response:
    body = req.json()
    _no_expiry(body)
    grantee = _grantee(body)
    role = _check_role(body.get("role"), req)
    perm = {"kind": "drive#permission", "id": _permission_id(grantee), **grantee,
            "role": role, "deleted": False, "pendingOwner": False}
    with api.state.lock:
        rec = api.state.get(file_id)
        if rec.id == api.state.root_id:
            raise ApiError(403, "insufficientFilePermissions",
                           "The user does not have sufficient permissions for this file.")
        old = _find(rec, perm["id"])
        if old is not None:  # sharing again with the same grantee changes the role
            rec.permissions.remove(old)
        rec.permissions.append(perm)
        api.state.save(rec)
    return _answer(req, perm)


def list_permissions(api: Api, req: Request, file_id: str) -> Response:
    mask = _mask(req, DEFAULT_LIST_FIELDS, PERMISSION_LIST_SCHEMA)
    with api.state.lock:
        perms: List[dict] = [owner_permission()] + [dict(p) for p in
                                                    api.state.get(file_id).permissions]
    return json_response(apply_fields({"kind": "drive#permissionList", "permissions": perms},
                                      mask))


def get(api: Api, req: Request, file_id: str, permission_id: str) -> Response:
    with api.state.lock:
        rec = api.state.get(file_id)
        if permission_id == OWNER_PERMISSION_ID:
            return _answer(req, owner_permission())
        perm = _find(rec, permission_id)
        if perm is None:
            raise _not_found(permission_id)
        return _answer(req, dict(perm))


def update(api: Api, req: Request, file_id: str, permission_id: str) -> Response:
    body = req.json()
    _no_expiry(body)
    unwritable = sorted(set(body) - {"role", "id", "kind"})
    if unwritable:
        raise ApiError(403, "fieldNotWritable", "The resource body includes fields which "
                       "are not directly writable.", location=unwritable[0],
                       location_type="other")
    role = _check_role(body.get("role"), req)
    with api.state.lock:
        rec = api.state.get(file_id)
        perm = _changeable(rec, permission_id, owner=ApiError(
            403, "forbidden", "The owner's permission cannot be changed; transfer ownership."))
        perm["role"] = role
        api.state.save(rec)
        return _answer(req, dict(perm))


def delete(api: Api, req: Request, file_id: str, permission_id: str) -> Response:
    with api.state.lock:
        rec = api.state.get(file_id)
        perm = _changeable(rec, permission_id, owner=ApiError(
            403, "cannotDeletePermission", "The authenticated user cannot delete the permission."))
        rec.permissions.remove(perm)
        api.state.save(rec)
    return Response(204)
