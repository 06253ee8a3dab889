"""Photo checks and the public copy. The type is decided by the bytes, never by the file name
or the client's Content-Type; the public copy is decoded and encoded again, which drops EXIF
(device, time and often the reporter's GPS position) and anything hidden after the image."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from watergrid.errors import AppError, FieldError

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class PhotoUpload:
    """A photo as received: the form's file or a multipart part."""

    filename: str
    data: bytes
    content_type: str = ""


@dataclass(frozen=True)
class CheckedPhoto:
    filename: str
    original: bytes
    original_content_type: str
    public: bytes
    content_type: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    """JPEG, PNG or WEBP by magic number, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _error(field: str, code: str, en: str, zh: str) -> AppError:
    return AppError(422, code, en, zh, [FieldError(field=field, message=en, message_zh=zh)])


def check_photo(
    photo: PhotoUpload, *, field: str, max_bytes: int, max_pixels: int, public_max_side: int
) -> CheckedPhoto:
    """Validate one photo and make its public copy; AppError (422) on anything wrong."""
    name = (photo.filename or "photo").rsplit("/", 1)[-1].rsplit("\\", 1)[-1][:200]
    if len(photo.data) > max_bytes:
        mb = max_bytes / (1024 * 1024)
        raise _error(
            field,
            "photo_too_large",
            f"{name} is larger than {mb:g} MB",
            f"照片 {name} 超过 {mb:g} MB，请压缩后重试",
        )
    kind = sniff(photo.data)
    if kind is None:
        raise _error(
            field,
            "photo_not_image",
            f"{name} is not a JPEG, PNG or WebP image",
            f"{name} 不是 JPEG、PNG 或 WebP 格式的图片",
        )
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1× and 2× its own limit; treat that as an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(photo.data))
            if img.format != kind:
                raise ValueError("container does not match its content")
            if img.width * img.height > max_pixels:
                raise _error(
                    field,
                    "photo_too_large",
                    f"{name} has more than {max_pixels} pixels",
                    f"照片 {name} 像素过大",
                )
            img.load()
            public, width, height = _public_copy(img, kind, public_max_side)
    except AppError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise _error(
            field,
            "photo_not_image",
            f"{name} cannot be read as an image ({type(exc).__name__})",
            f"无法识别照片 {name}，文件可能已损坏",
        ) from exc
    return CheckedPhoto(
        filename=name,
        original=photo.data,
        original_content_type=MIME[kind],
        public=public,
        content_type=MIME[kind],
        width=width,
        height=height,
    )


def _public_copy(img: Image.Image, kind: str, max_side: int) -> tuple[bytes, int, int]:
    # Apply the EXIF orientation first: once EXIF is gone, a rotated phone photo would
    # otherwise show sideways.
    img = ImageOps.exif_transpose(img)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    out = io.BytesIO()
    if kind == "JPEG":
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(out, "JPEG", quality=85, optimize=True)
    elif kind == "PNG":
        img.save(out, "PNG", optimize=True)
    else:
        img.save(out, "WEBP", quality=85)
    return out.getvalue(), img.width, img.height
