# Sourced by every recipe's path.sh and by tests/run.sh: makes sure tools/venv exists and is
# current (tools/install.sh returns at once when it is), then activates it.
SV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$SV_ROOT/tools/install.sh" >&2 || { echo "tools/env.sh: tools/install.sh failed" >&2; return 1; }
. "$SV_ROOT/tools/venv/bin/activate"
export SV_ROOT LC_ALL=C PYTHONUNBUFFERED=1
