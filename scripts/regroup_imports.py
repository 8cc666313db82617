#!/usr/bin/env python3
"""Rewrite old thrifty module paths to the regrouped layout (issue #15), in place.

Usage: scripts/regroup_imports.py [FILE_OR_DIR ...]   (default: src tests benchmarks scripts docs README.md)

Idempotent: new paths are left alone, so it can run again over code that mixes both.
Rewrites dotted module paths (``thrifty.table_io``) and file paths (``thrifty/table_io.py``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# old module (under thrifty.) -> new module; longest names first so prefixes do not shadow.
MOVES = {
    "config_parse": "config.parse",
    "table_io": "data.table_io",
    "table": "data.table",
    "prompts_file": "data.prompts_file",
    "outcomes_log": "data.outcomes_log",
    "engine": "serving.engine",
    "trace": "serving.trace",
    "toolcheck": "serving.toolcheck",
    "budget": "serving.budget",
    "local": "serving.local",
    "profiles": "serving.profiles",
    "prompt_adapt": "serving.prompt_adapt",
    "prompt_provider": "serving.adapted_provider",
    "providers": "serving.providers",
    "cache": "serving.cache",
    "collect": "calibration.collect",
    "label": "calibration.label",
    "judge": "calibration.judge",
    "student": "calibration.student",
    "offline.artefact": "serving.artefact",
}
# thrifty.config became a package: its old public names live on in the façade thrifty.config.settings.
CONFIG_SUBMODULES = {"settings", "parse", "model", "audit", "refit", "checks"}  # modules of the config package

_DOTTED = re.compile(r"\bthrifty\.(" + "|".join(re.escape(k) for k in sorted(MOVES, key=len, reverse=True)) + r")(?![\w/])")
_SLASHED = re.compile(
    r"\bthrifty/(" + "|".join(re.escape(k.replace(".", "/")) for k in sorted(MOVES, key=len, reverse=True)) + r")(?=[/.])"
)
_CONFIG = re.compile(r"\bthrifty\.config(?![\w])(\.\w+)?")
_CONFIG_PATH = re.compile(r"\bthrifty/config\.py\b")


def _config(m: re.Match[str]) -> str:
    sub = m.group(1)
    if sub and sub[1:] in CONFIG_SUBMODULES:
        return m.group(0)
    return "thrifty.config.settings" + (sub or "")


def rewrite(text: str) -> str:
    text = _CONFIG.sub(_config, text)
    text = _CONFIG_PATH.sub("thrifty/config/settings.py", text)
    text = _DOTTED.sub(lambda m: "thrifty." + MOVES[m.group(1)], text)
    return _SLASHED.sub(lambda m: "thrifty/" + MOVES[m.group(1).replace("/", ".")].replace(".", "/"), text)


def main(argv: list[str]) -> int:
    targets = [Path(a) for a in argv] or [Path(p) for p in ("src", "tests", "benchmarks", "scripts", "docs", "README.md")]
    changed = 0
    for t in targets:
        files = [t] if t.is_file() else [f for f in t.rglob("*") if f.suffix in {".py", ".md", ".toml", ".txt", ".cfg", ".ini"}]
        for f in files:
            if f.name == "regroup_imports.py" or not f.exists():
                continue
            old = f.read_text(encoding="utf-8")
            new = rewrite(old)
            if new != old:
                f.write_text(new, encoding="utf-8")
                changed += 1
                print(f"rewrote {f}")
    print(f"{changed} file(s) rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
