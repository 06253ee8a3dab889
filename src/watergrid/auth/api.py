"""Bearer tokens for API clients, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from watergrid.auth import service
from watergrid.auth.deps import public, staff
from watergrid.deps import SessionDep
from watergrid.errors import AppError

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
    name: str = Field("api", max_length=64, description="A label for the token")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"


class Me(BaseModel):
    username: str
    display_name: str
    roles: list[str]
    district: bool
    grid_ids: list[int]
    zone_ids: list[int]
    subdistrict_ids: list[int]
    department_ids: list[int]


@router.post("/token", response_model=TokenResponse, dependencies=[Depends(public)])
def issue_token(db: SessionDep, body: TokenRequest) -> TokenResponse:
    user = service.authenticate(db, username=body.username, password=body.password)
    if user is None:
        raise AppError(401, "bad_credentials", "Wrong username or password", "用户名或密码错误")
    return TokenResponse(access_token=service.issue_token(db, user_id=user.id, name=body.name))


@router.get("/me", response_model=Me)
def me(principal: staff("self.read")) -> Me:  # type: ignore[valid-type]
    return Me(
        username=principal.username,
        display_name=principal.display_name,
        roles=sorted(principal.roles),
        district=principal.district,
        grid_ids=sorted(principal.grid_ids),
        zone_ids=sorted(principal.zone_ids),
        subdistrict_ids=sorted(principal.subdistrict_ids),
        department_ids=sorted(principal.department_ids),
    )
