"""Checking uploaded application documents. PDFs are judged by their bytes (header and end
marker), images through the work orders' photo checks, which also re-encode them without
EXIF — a phone photo of a licence should not carry where it was taken."""

from __future__ import annotations

from dataclasses import dataclass

from watergrid.errors import AppError, FieldError
from watergrid.workorders.photos import PhotoUpload, check_photo, sniff

MAX_BYTES = 20 * 1024 * 1024
MAX_FILES_PER_DOC = 10
MAX_FILES = 40
IMAGE_MAX_PIXELS = 60_000_000
IMAGE_MAX_SIDE = 3000


@dataclass(frozen=True)
class Upload:
    doc_code: str
    filename: str
    data: bytes


@dataclass(frozen=True)
class CheckedDocument:
    doc_code: str
    filename: str
    content_type: str
    data: bytes


def _error(field: str, code: str, en: str, zh: str) -> AppError:
    return AppError(422, code, en, zh, [FieldError(field=field, message=en, message_zh=zh)])


def _clean_name(name: str) -> str:
    base = (name or "file").replace("\\", "/").rsplit("/", 1)[-1].strip() or "file"
    return "".join(ch for ch in base if ch.isprintable())[:200]


def is_pdf(data: bytes) -> bool:
    # A truncated upload keeps its header but loses the end marker: check both ends.
    return data[:5] == b"%PDF-" and b"%%EOF" in data[-2048:]


def check_document(up: Upload) -> CheckedDocument:
    field = f"doc__{up.doc_code}"
    name = _clean_name(up.filename)
    if not up.data:
        raise _error(field, "empty_file", f"{name} is empty", f"文件 {name} 为空")
    if len(up.data) > MAX_BYTES:
        raise _error(
            field,
            "file_too_large",
            f"{name} is larger than 20 MB",
            f"文件 {name} 超过 20 MB，请压缩或拆分后上传",
        )
    if is_pdf(up.data):
        return CheckedDocument(up.doc_code, name, "application/pdf", up.data)
    if up.data[:5] == b"%PDF-":
        raise _error(
            field,
            "bad_pdf",
            f"{name} is an incomplete PDF",
            f"文件 {name} 不完整（PDF 缺少结束标记），请重新导出后上传",
        )
    if sniff(up.data) is None:
        raise _error(
            field,
            "bad_file_type",
            f"{name} is not a PDF, JPEG, PNG or WebP file",
            f"文件 {name} 格式不支持，请上传 PDF 或 JPG/PNG 图片",
        )
    photo = check_photo(
        PhotoUpload(filename=name, data=up.data),
        field=field,
        max_bytes=MAX_BYTES,
        max_pixels=IMAGE_MAX_PIXELS,
        public_max_side=IMAGE_MAX_SIDE,
    )
    return CheckedDocument(up.doc_code, name, photo.content_type, photo.public)


def check_uploads(uploads: list[Upload], *, known_codes: set[str]) -> list[CheckedDocument]:
    """All files checked before anything is stored."""
    if len(uploads) > MAX_FILES:
        raise _error(
            "documents",
            "too_many_files",
            f"At most {MAX_FILES} files",
            f"一次最多上传 {MAX_FILES} 个文件",
        )
    per_code: dict[str, int] = {}
    for up in uploads:
        if up.doc_code not in known_codes:
            raise _error(
                f"doc__{up.doc_code}",
                "unknown_document",
                f"No document {up.doc_code} in this service's checklist",
                "材料清单中没有该项材料",
            )
        per_code[up.doc_code] = per_code.get(up.doc_code, 0) + 1
        if per_code[up.doc_code] > MAX_FILES_PER_DOC:
            raise _error(
                f"doc__{up.doc_code}",
                "too_many_files",
                f"At most {MAX_FILES_PER_DOC} files per document",
                f"每项材料最多上传 {MAX_FILES_PER_DOC} 个文件",
            )
    return [check_document(up) for up in uploads]
