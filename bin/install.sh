#!/usr/bin/env bash
# Install w2vtk into a virtual environment (default .venv beside this repo), torch first.
#
#   bash bin/install.sh [--venv DIR] [--torch SPEC] [--torch-index URL] [--lm-max-order N] [--test]
#
# --torch SPEC        pip requirement for torch (default: torch==2.13.0)
# --torch-index URL   extra index for torch, e.g. https://download.pytorch.org/whl/cpu for the small
#                     CPU build on a machine without a GPU, or .../whl/cu128 for a given CUDA.
#                     Without it pip takes PyPI's default build (CUDA on Linux x86_64).
# --lm-max-order N    build KenLM (lmplz, the kenlm module, flashlight-text) for n-grams up to N
#                     (default 6, as PyPI's wheels): 20 for wav2letter's 10-20-gram token LMs of the
#                     lexicon-free decoder (rebuilds kenlm and flashlight-text from source, cached)
# --test              run the test suite afterwards (python -m pytest --durations=15)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
torch_spec="torch==2.13.0"
torch_index=""
run_tests=false
lm_max_order=6
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv=$2; shift 2 ;;
    --torch) torch_spec=$2; shift 2 ;;
    --torch-index) torch_index=$2; shift 2 ;;
    --lm-max-order) lm_max_order=$2; shift 2 ;;
    --test) run_tests=true; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' || {
  echo "install.sh: w2vtk needs Python 3.10-3.12 (flashlight-text has no newer wheels); set PYTHON=python3.11" >&2
  exit 1
}
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  if [ -n "$torch_index" ]; then
    "${pip[@]}" "$torch_spec" --extra-index-url "$torch_index"
  else
    "${pip[@]}" "$torch_spec"
  fi
fi
"${pip[@]}" -e "$root[test,kenlm]"
if [ -f "$root/bin/install_kenlm.sh" ]; then
  if [ "$lm_max_order" = 6 ]; then
    bash "$root/bin/install_kenlm.sh"
  else
    PYTHON="$venv/bin/python" bash "$root/bin/install_kenlm.sh" --max-order "$lm_max_order" --python
  fi
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
