"""Files a killed process cannot leave half-written, and JSONL records read with the line that broke.

Plain local paths only (the DeepSpeed ranks and Ray workers write to their own disk here); `model/`
imports this module too, so it needs nothing beyond the standard library.
"""

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def partial_path(path: Path) -> Path:
    """A unique hidden sibling to write `path` under before renaming it into place; keeps its suffix for
    writers that insist on one (numpy appends `.npy`)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)` then rename: a reader sees the old file or the whole new one, never half of it."""
    partial = partial_path(Path(path))
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda partial: partial.write_text(text))


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, record) per non-blank line; a bad line raises ValueError naming `file:line`."""
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from None


def read_jsonl(path: Path, missing_ok: bool = False) -> list[dict]:
    if missing_ok and not Path(path).exists():
        return []
    return [record for _, record in iter_jsonl(path)]


def file_digest(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
