#!/usr/bin/env bash
# Install w2vtk into a virtual environment (default .venv beside this repo), torch first.
#
#   bash bin/install.sh [--venv DIR] [--torch SPEC] [--torch-index URL] [--lm-max-order N] [--no-system] [--test]
#
# First the system packages of the README table (ffmpeg; the compiler, cmake and headers that
# KenLM's build needs), unattended: apt-get as root, `sudo -n apt-get` where that works (the
# command is printed), otherwise it stops with the one command to run (bin/install_system.sh).
#
# --torch SPEC        pip requirement for torch (default: torch==2.13.0)
# --torch-index URL   extra index for torch, e.g. https://download.pytorch.org/whl/cpu for the small
#                     CPU build on a machine without a GPU, or .../whl/cu128 for a given CUDA.
#                     Without it pip takes PyPI's default build (CUDA on Linux x86_64).
# --lm-max-order N    build KenLM (lmplz, the kenlm module, flashlight-text) for n-grams up to N
#                     (default 6, as PyPI's wheels): 20 for wav2letter's 10-20-gram token LMs of the
#                     lexicon-free decoder (rebuilds kenlm and flashlight-text from source, cached)
# --no-system         install no system packages: KenLM's lmplz is not built (prep lm uses the
#                     pure-Python estimator), WSJ's shorten audio uses the slow desphere decoder,
#                     and the tests that need them are skipped (said once)
# --test              run the test suite afterwards (python -m pytest --durations=15)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
torch_spec="torch==2.13.0"
torch_index=""
run_tests=false
no_system=false
lm_max_order=6
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv=$2; shift 2 ;;
    --torch) torch_spec=$2; shift 2 ;;
    --torch-index) torch_index=$2; shift 2 ;;
    --lm-max-order) lm_max_order=$2; shift 2 ;;
    --test) run_tests=true; shift ;;
    --no-system) no_system=true; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' || {
  echo "install.sh: w2vtk needs Python 3.10-3.12 (flashlight-text has no newer wheels); set PYTHON=python3.11" >&2
  exit 1
}
if $no_system; then bash "$root/bin/install_system.sh" --no-system; else bash "$root/bin/install_system.sh"; fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
# The tests read this marker: a tool missing because of --no-system skips its tests, otherwise fails them.
if $no_system; then touch "$venv/.w2vtk-no-system"; else rm -f "$venv/.w2vtk-no-system"; fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  if [ -n "$torch_index" ]; then
    "${pip[@]}" "$torch_spec" --extra-index-url "$torch_index"
  else
    "${pip[@]}" "$torch_spec"
  fi
fi
"${pip[@]}" -e "$root[test,kenlm]"
kenlm=(bash "$root/bin/install_kenlm.sh")
[ "$lm_max_order" = 6 ] || kenlm=(env PYTHON="$venv/bin/python" bash "$root/bin/install_kenlm.sh" --max-order "$lm_max_order" --python)
if ! "${kenlm[@]}"; then
  if ! $no_system; then exit 1; fi
  echo "install.sh: --no-system: KenLM's tools were not built; w2vtk prep lm uses its pure-Python estimator" >&2
fi
echo "w2vtk installed in $venv (activate with: . $venv/bin/activate)"
if $run_tests; then
  cd "$root"
  set +e
  "$venv/bin/python" -m pytest --durations=15
  rc=$?
  set -e
  if [ $rc -eq 5 ]; then echo "install.sh: pytest collected no tests" >&2; exit 1; fi
  exit $rc
fi
