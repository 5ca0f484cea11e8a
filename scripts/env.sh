# Creates (or refreshes) the project's virtual environment in .venv; sourced by the scripts.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv
python=${PYTHON:-python3}
stamp=$venv/.installed-$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)-$1
if [[ ! -x $venv/bin/python ]]; then
  echo "creating virtual environment in $venv" >&2
  "$python" -m venv "$venv"
fi
if [[ ! -e $stamp ]]; then
  echo "installing strom and its dependencies ($1) into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
  if [[ $1 == test ]]; then target=".[test]"; else target="."; fi
  (cd "$root" && "$venv/bin/python" -m pip install --quiet -e "$target") 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  "$venv/bin/python" -c "import strom" || { echo "installation failed" >&2; exit 1; }
  rm -f "$venv"/.installed-*-"$1"
  touch "$stamp"
fi
