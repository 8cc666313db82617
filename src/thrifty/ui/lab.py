"""The Lab page's files: ``metrics.json`` of ``thrifty eval`` runs and ``thrifty simulate`` JSON
found under the lab folder — ``$THRIFTY_LAB_DIR``, else ``<data_dir>/lab`` (the browser can also
open a file from the user's disk; that never reaches the server). Read-only; names are relative
to the folder and a name that leaves it is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from thrifty.errors import RequestError

__all__ = ["lab_dir", "lab_listing"]

_MAX_FILES = 200
_MAX_BYTES = 20_000_000


def lab_dir(rt: Any) -> Path:
    env = os.environ.get("THRIFTY_LAB_DIR")
    return Path(env).expanduser() if env else rt.settings.server.resolved_data_dir() / "lab"


def lab_listing(rt: Any, file: str | None = None) -> dict[str, Any]:
    """The JSON files in the lab folder (newest first), or ``file``'s parsed content."""
    root = lab_dir(rt)
    if file is None:
        found: list[tuple[float, str, int]] = []
        if root.is_dir():
            for p in root.rglob("*.json"):
                if len(found) >= _MAX_FILES * 5:
                    break
                if p.is_file():
                    st = p.stat()
                    found.append((st.st_mtime, p.relative_to(root).as_posix(), st.st_size))
        found.sort(reverse=True)
        return {"folder": str(root), "files": [{"name": n, "modified": t, "bytes": b} for t, n, b in found[:_MAX_FILES]]}
    path = (root / file).resolve()
    if not path.is_relative_to(root.resolve()) or path.suffix != ".json":
        raise RequestError(f"file={file!r} is not a .json file inside the lab folder", param="file", code="invalid_value")
    if not path.is_file():
        raise RequestError(f"no lab file {file!r} in {root}", param="file", code="not_found")
    if path.stat().st_size > _MAX_BYTES:
        raise RequestError(f"{file} is over {_MAX_BYTES // 1_000_000} MB", param="file", code="invalid_value")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"{file} is not valid JSON: {exc}", param="file", code="invalid_value") from None
    return {"folder": str(root), "name": file, "content": content}
