"""The held-aside records inference answers: Alpaca records (an `image` field for image records) or chat JSONL
(one user turn, image_url parts holding image paths, then the answer), each checked with file and line."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, RecordError
from ..paths import resolve_input
from ..records import iter_json_objects, validate
from .files import id_key
from .settings import InferenceConfig

def read_examples(cfg: InferenceConfig) -> tuple[Path, list[dict]]:
    """The records to answer, each with an `id` (its index when the data has none), ids unique.

    Alpaca records, or chat records (one user turn, then the answer) read into the same fields: the
    user turn's text is the instruction, the answer the reference. Image references (an Alpaca
    `image`, chat `image_url` / `image` parts) are resolved under the images root and opened now,
    before any model loads; each example keeps them as given (`image_refs`) and resolved (`image_paths`).
    """
    from ..training.data import detect_format

    path = resolve_input(cfg.data)
    root = resolve_input(cfg.images_root) if cfg.images_root else path.parent
    if cfg.images_root and not root.is_dir():
        raise ConfigError(f"images_root {cfg.images_root}: no such folder")
    kind = detect_format(path)
    if kind not in ("alpaca", "chat"):
        raise RecordError(path, None, f"{kind} records: inference answers Alpaca records or chat records")
    examples, seen = [], {}
    for i, (line, obj) in enumerate(iter_json_objects(path)):
        if cfg.limit is not None and i >= cfg.limit:
            break
        if problem := validate(obj, kind):
            raise RecordError(path, line, f"bad {kind} record: {problem}")
        example = _alpaca_example(obj, path, line) if kind == "alpaca" else _chat_example(obj, path, line)
        example["id"] = obj.get("id", str(i))
        key = id_key(example["id"])
        if key in seen:
            raise RecordError(path, None, f"record #{i} has the id {example['id']!r} of record #{seen[key]}: ids key "
                                          "the answers (a resumed run skips the ids it has), so they must be unique")
        seen[key] = i
        _resolve_images(example, root, cfg.images_root is not None, cfg.backend == "openai", path, line)
        examples.append(example)
    if not examples:
        raise RecordError(path, None, f"holds no {'Alpaca' if kind == 'alpaca' else 'chat'} records to answer")
    return path, examples


def _alpaca_example(obj: dict, path: Path, line: int) -> dict:
    image = obj.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise RecordError(path, line, "field 'image' must be a path (or null)")
    return {**obj, "input": obj.get("input", ""), "image_refs": [image] if image else []}


def _chat_example(obj: dict, path: Path, line: int) -> dict:
    """A single-turn chat record as an example; `user_turn` keeps its parts in order for LLaVA models."""
    messages = obj["messages"]
    if [m["role"] for m in messages] != ["user", "assistant"]:
        raise RecordError(path, line, "inference answers single-turn chat records: one user turn, then the "
                                      f"assistant's answer (this one: {[m['role'] for m in messages]})")
    texts, refs, parts = [], [], []
    for part in messages[0]["content"] if isinstance(messages[0]["content"], list) else [messages[0]["content"]]:
        kind = "text" if isinstance(part, str) else part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(part if isinstance(part, str) else part.get("text", ""))
            parts.append({"type": "text", "text": texts[-1]})
        elif kind in ("image_url", "image"):
            ref = part.get("image_url") if kind == "image_url" else (part.get("path") or part.get("url") or part.get("image"))
            ref = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(ref, str) or not ref.strip():
                raise RecordError(path, line, f"{kind} part without a path")
            refs.append(ref)
            parts.append({"type": "image_url", "image_url": {"url": ref}})
        else:
            raise RecordError(path, line, f"unsupported content part {json.dumps(part)[:60]} (text, image_url or image)")
    answer = messages[1]["content"]
    if isinstance(answer, list):
        answer = "".join(p.get("text", "") for p in answer if isinstance(p, dict) and p.get("type") == "text")
    if not answer.strip():
        raise RecordError(path, line, "the answer (last message) has no text")
    user_turn = {"role": "user", "content": parts if refs else "\n".join(texts)}
    return {"instruction": "\n".join(texts), "input": "", "output": answer, "image_refs": refs,
            "user_turn": user_turn}


def _resolve_images(example: dict, root: Path, root_given: bool, allow_urls: bool, path: Path, line: int) -> None:
    """Each image reference as a checked local path (or URL, for servers), or a RecordError naming the record."""
    from ..teachers.images import is_remote, resolve_image, verify_image

    resolved = []
    for ref in example["image_refs"]:
        try:
            image = resolve_image(ref, root, allow_urls=allow_urls)  # never outside the root
            if not is_remote(image):
                verify_image(image)
        except ValueError as e:
            hint = "" if root_given else " (set --images_root to the folder the paths are relative to)"
            raise RecordError(path, line, f"record {example['id']!r}: {e}{hint}") from None
        resolved.append(image)
    example["image_paths"] = resolved
    if example.get("user_turn") and resolved:  # the request reads the resolved files; rows keep the references
        paths = iter(resolved)
        example["user_turn"] = {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": next(paths)}} if p["type"] == "image_url" else p
            for p in example["user_turn"]["content"]]}
