"""Errors a user can cause: one class, one JSON shape, a Chinese and an English message.

API routes answer {"error": {"code", "message", "message_zh", "fields"}}; pages render the
Chinese message; Open311 routes translate to the GeoReport error list in open311/."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    field: str
    message: str
    message_zh: str
    line: int | None = None
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class AppError(Exception):
    status: int
    code: str
    message: str
    message_zh: str
    fields: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "message_zh": self.message_zh,
                "fields": [f.as_dict() for f in self.fields],
            }
        }


def not_found(what: str, what_zh: str, key: object) -> AppError:
    return AppError(404, "not_found", f"{what} {key} not found", f"未找到{what_zh}：{key}")


def forbidden() -> AppError:
    return AppError(403, "forbidden", "Outside your permissions or scope", "超出您的权限或管辖范围")


def unauthenticated() -> AppError:
    return AppError(401, "unauthenticated", "Sign in first", "请先登录")


def invalid(fields: list[FieldError], message: str = "Invalid input") -> AppError:
    return AppError(422, "invalid", message, "输入有误，请检查标出的字段", fields)


def overloaded() -> AppError:
    """Too much at once (the database or a queue): the client may try again shortly."""
    return AppError(
        503,
        "overloaded",
        "The service is busy; please try again in a moment",
        "系统繁忙，请稍后再试",
    )
