"""Images in teacher requests: confined to a declared root, hashed for request keys, sent as data URLs.

An image reference from a corpus is a path relative to the images root (or, for the HTTP teacher,
an http(s) URL). A path that resolves outside the root (`../`, an absolute path elsewhere, a
symlink that points out) is rejected: a corpus must not make the workbench read arbitrary files.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from functools import lru_cache
from pathlib import Path

REMOTE_SCHEMES = ("http://", "https://")


def is_remote(url: str) -> bool:
    return url.startswith(REMOTE_SCHEMES)


def resolve_image(ref: str, root: str | Path, *, allow_urls: bool = False) -> str:
    """The absolute path of `ref` under `root` (or the URL itself, when allowed); ValueError says why not."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("empty image reference")
    ref = ref.strip()
    if is_remote(ref):
        if not allow_urls:
            raise ValueError(f"image URL {ref!r} needs the HTTP teacher; in-process teachers read local files only")
        return ref
    if ref.startswith("data:") or "://" in ref:
        raise ValueError(f"unsupported image reference {ref[:40]!r}: give a path under the images root or an http(s) URL")
    root_path = Path(root).resolve()
    path = (root_path / ref).resolve()  # resolve() follows symlinks, so a link out of the root is caught too
    if not path.is_relative_to(root_path):
        raise ValueError(f"image path {ref!r} escapes the images root {root_path}")
    if not path.is_file():
        raise ValueError(f"image {ref!r} not found under {root_path}")
    return str(path)


@lru_cache(maxsize=4096)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def image_digest(url: str) -> str:
    """What identifies an image in a request key: its content for a local file, else the URL."""
    if is_remote(url) or url.startswith("data:"):
        return url
    stat = Path(url).stat()
    return _file_digest(url, stat.st_mtime_ns, stat.st_size)


def to_data_url(path: str) -> str:
    """A local image as a base64 data URL, the form OpenAI-compatible servers accept inline."""
    mime = mimetypes.guess_type(path)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def verify_image(path: str) -> None:
    """Raise ValueError unless `path` is an image PIL can read (checked without decoding it all)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{Path(path).name} is not a readable image ({type(e).__name__})") from None


def load_image(url: str):
    """A local image as an RGB PIL image (in-process teachers never fetch URLs)."""
    from PIL import Image

    if is_remote(url):
        raise ValueError(f"in-process teachers read local images only, got {url!r}")
    with Image.open(url) as image:
        return image.convert("RGB")


def user_message(text: str, images: list[str] = ()) -> dict:
    """An OpenAI-format user turn: plain text, or images first and then the text."""
    if not images:
        return {"role": "user", "content": text}
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {"role": "user", "content": parts + [{"type": "text", "text": text}]}


def message_images(messages: list[dict]) -> list[str]:
    """Every image URL in `messages`, in order."""
    return [part["image_url"]["url"] for m in messages if isinstance(m.get("content"), list)
            for part in m["content"] if isinstance(part, dict) and part.get("type") == "image_url"]
