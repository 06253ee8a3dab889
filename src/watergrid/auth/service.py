"""Users, passwords (argon2), API tokens and keys, and loading a Principal."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth.models import ApiKey, ApiToken, User, UserRole, UserScope
from watergrid.auth.permissions import ROLES
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.errors import AppError
from watergrid.geo import service as geo_service

_hasher = PasswordHasher()
SCOPE_KINDS = ("district", "subdistrict", "grid", "zone", "department")


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def get_by_username(db: Session, *, username: str) -> User | None:
    return db.scalar(select(User).where(User.username == username))


def create_user(
    db: Session,
    *,
    username: str,
    display_name: str,
    password: str,
    roles: Iterable[str],
    scopes: Iterable[tuple[str, int | None]] = (),
    person_id: int | None = None,
) -> User:
    roles = list(roles)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AppError(422, "unknown_role", f"Unknown role {unknown}", f"未知角色：{unknown}")
    if get_by_username(db, username=username) is not None:
        raise AppError(409, "user_exists", f"User {username} exists", f"用户 {username} 已存在")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        person_id=person_id,
    )
    db.add(user)
    db.flush()
    for role in roles:
        db.add(UserRole(user_id=user.id, role=role))
    for kind, ref in scopes:
        if kind not in SCOPE_KINDS:
            raise AppError(422, "unknown_scope", f"Unknown scope {kind}", f"未知范围：{kind}")
        db.add(UserScope(user_id=user.id, kind=kind, ref_id=ref))
    db.flush()
    return user


def authenticate(db: Session, *, username: str, password: str) -> User | None:
    user = get_by_username(db, username=username)
    if user is None or not user.active or not user.password_hash:
        # Hash anyway so that a missing user costs the same time as a wrong password.
        _hasher.hash(password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def issue_token(db: Session, *, user_id: int, name: str) -> str:
    token = "wgt_" + secrets.token_urlsafe(32)
    db.add(ApiToken(user_id=user_id, name=name, token_sha256=sha256(token)))
    db.flush()
    return token


def user_for_token(db: Session, *, token: str) -> User | None:
    row = db.scalar(
        select(ApiToken).where(ApiToken.token_sha256 == sha256(token), ApiToken.revoked.is_(False))
    )
    if row is None or (row.expires_at is not None and row.expires_at < utcnow()):
        return None
    user = db.get(User, row.user_id)
    return user if user is not None and user.active else None


def issue_api_key(db: Session, *, client_name: str) -> str:
    key = "wgk_" + secrets.token_urlsafe(24)
    db.add(ApiKey(client_name=client_name, key_sha256=sha256(key)))
    db.flush()
    return key


def api_key_client(db: Session, *, key: str) -> ApiKey | None:
    return db.scalar(
        select(ApiKey).where(ApiKey.key_sha256 == sha256(key), ApiKey.revoked.is_(False))
    )


def load_principal(db: Session, *, user: User) -> Principal:
    roles = frozenset(db.scalars(select(UserRole.role).where(UserRole.user_id == user.id)))
    scopes = db.execute(
        select(UserScope.kind, UserScope.ref_id).where(UserScope.user_id == user.id)
    ).all()
    by_kind: dict[str, set[int]] = {k: set() for k in SCOPE_KINDS}
    for kind, ref in scopes:
        if ref is not None:
            by_kind[kind].add(ref)
    district = any(kind == "district" for kind, _ in scopes)
    reach_grids, reach_zones = geo_service.reach(
        geo_service.area_links(db),
        subdistrict_ids=by_kind["subdistrict"],
        grid_ids=by_kind["grid"],
        zone_ids=by_kind["zone"],
    )
    return Principal(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        roles=roles,
        person_id=user.person_id,
        district=district,
        subdistrict_ids=frozenset(by_kind["subdistrict"]),
        grid_ids=frozenset(by_kind["grid"]),
        zone_ids=frozenset(by_kind["zone"]),
        department_ids=frozenset(by_kind["department"]),
        reach_grid_ids=frozenset(reach_grids),
        reach_zone_ids=frozenset(reach_zones),
    )
