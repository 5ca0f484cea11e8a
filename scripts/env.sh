# Creates (or refreshes) the project's virtual environment in .venv; sourced by the scripts.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv
python=${PYTHON:-python3}
# The stamp names what the installation depends on: pyproject.toml without the sections of tools
# that read it at run time ([tool.pytest...], [tool.ruff...]: a new marker or lint rule does not
# reinstall everything), and the C extension's source (a change rebuilds it).
install_inputs() {
  awk '/^\[/ { skip = ($0 ~ /^\[\[?tool\./ && $0 !~ /^\[\[?tool\.setuptools/) } !skip' \
    "$root/pyproject.toml"
  cat "$root"/src/strom/protocol/*.c
}
stamp=$venv/.installed-$(install_inputs | sha256sum | cut -c1-16)-$1
if [[ ! -x $venv/bin/python ]]; then
  echo "creating virtual environment in $venv" >&2
  "$python" -m venv "$venv"
fi
if [[ ! -e $stamp ]]; then
  echo "installing strom and its dependencies ($1) into $venv" >&2
  # The venv's own pip (23.x with Python 3.11) installs editable pyproject projects: no upgrade,
  # which was a download on every installation.
  if [[ $1 == test ]]; then target=".[test]"; else target="."; fi
  (cd "$root" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$target") 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  "$venv/bin/python" -c "import strom" || { echo "installation failed" >&2; exit 1; }
  rm -f "$venv"/.installed-*-"$1"
  touch "$stamp"
fi
