#!/usr/bin/env bash
# Creates tools/venv (Python 3.11) with torch, torchaudio, the sv dependencies and sv itself (editable).
# Idempotent: a stamp records what was installed, so a second run returns at once, silently.
#   bash tools/install.sh [--force]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/tools/venv
python=${PYTHON:-python3.11}
force=false
[ "${1:-}" = "--force" ] && force=true

# The stamp is the hash of everything that decides the venv's contents.
want=$(cat "$root/tools/install.sh" "$root/tools/requirements.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)
stamp=$venv/.sv_install_stamp
if ! $force && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi

command -v "$python" >/dev/null || { echo "tools/install.sh: $python not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip="$venv/bin/python -m pip --quiet"
$pip install --upgrade pip setuptools wheel
# torch first, pinned, so nothing else drags in another build.
$pip install torch==2.14.1 torchaudio==2.11.0
$pip install -r "$root/tools/requirements.txt"
$pip install --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c "import torch, torchaudio, sv; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
echo "$want" >"$stamp"
echo "tools/install.sh: done; activate with: . $venv/bin/activate"
