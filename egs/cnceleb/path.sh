# Activates tools/venv (installing it first when missing) and sets LC_ALL=C for sorting.
. "$(dirname "${BASH_SOURCE[0]}")/../../tools/env.sh"
