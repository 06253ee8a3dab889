"""Language catalogs: flat key -> text JSON files under web/i18n/. Chinese is the default;
a missing English text falls back to Chinese, never to a bare key."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import Request

LANGUAGES = ("zh_CN", "en")
LANG_COOKIE = "wg_lang"
_DIR = Path(__file__).parent / "i18n"


@lru_cache
def catalog(lang: str) -> dict[str, str]:
    return json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def language(request: Request, default: str = "zh_CN") -> str:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or default
    return asked if asked in LANGUAGES else default


def translate(lang: str, key: str, **values: object) -> str:
    text = catalog(lang).get(key) or catalog("zh_CN").get(key) or key
    return text.format(**values) if values else text
