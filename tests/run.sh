#!/usr/bin/env bash
# The test suite: bash tests/run.sh [pytest arguments]
# Creates tools/venv first when it is missing (tools/install.sh), then runs pytest on tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/env.sh
if [ $# -eq 0 ]; then set -- tests; fi
python -m pytest "$@"
