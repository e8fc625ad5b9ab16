#!/usr/bin/env bash
# Build KenLM's lmplz, build_binary and query into tools/kenlm/bin, the way Kaldi's tools/ does:
# from the C++ source that the PyPI `kenlm` sdist ships (cmake), cached: a finished build is reused.
#
#   bash bin/install_kenlm.sh [--prefix DIR] [--version 0.3.0] [--jobs N] [--max-order N] [--python]
#
# --max-order N  KENLM_MAX_ORDER of the build (default 6, KenLM's own default). Token-level LMs for
#                the lexicon-free decoder use orders 10-20 (wav2letter): build them with 20.
# --python       also rebuild, for the same max order, the Python `kenlm` module and flashlight-text
#                (from their PyPI sdists, flashlight-text linked against this KenLM) and install
#                them into $PYTHON's environment (default: $root/.venv). PyPI's wheels are
#                compiled with max order 6 and cannot load a 10-gram.
# Needs cmake, a C++ compiler, Boost (program_options, system, thread, test), zlib, bzip2, xz.
# Finished builds are cached in ~/.cache/w2vtk (or $W2VTK_CACHE) and reused by other clones.
# When something is missing it prints the one command that installs it and exits 1.
# `w2vtk prep lm` finds the binaries in tools/kenlm/bin (or on PATH, or $KENLM_BIN).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix="$root/tools/kenlm"
version="0.3.0"
jobs=$(nproc 2>/dev/null || echo 2)
max_order=6
with_python=false
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --max-order) max_order=$2; shift 2 ;;
    --python) with_python=true; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install_kenlm.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "$(date '+%H:%M:%S') install_kenlm: $*" >&2; }

case "$max_order" in
  ''|*[!0-9]*) echo "install_kenlm.sh: --max-order $max_order: expected a number 2..32" >&2; exit 2 ;;
esac
if [ "$max_order" -lt 2 ] || [ "$max_order" -gt 32 ]; then
  echo "install_kenlm.sh: --max-order $max_order: expected a number 2..32" >&2; exit 2
fi

if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"
else py=python3; fi
bin="$prefix/bin"
# order 6 keeps the plain names of earlier versions of this script
tag="$version"; [ "$max_order" = 6 ] || tag="$version-o$max_order"
stamp="$prefix/.built-$tag"
cache_root="${W2VTK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/w2vtk}"
cache="$cache_root/kenlm-$tag"

need_bins=true
if [ -f "$stamp" ] && [ -x "$bin/lmplz" ] && [ -x "$bin/build_binary" ] && [ -x "$bin/query" ]; then
  log "KenLM $version (max order $max_order) already built in $bin (delete $stamp to rebuild)"
  need_bins=false
fi
# A build from another clone on this machine is reused (the C++ build takes minutes on 2 cores).
if $need_bins && [ -x "$cache/lmplz" ] && [ -x "$cache/build_binary" ] && [ -x "$cache/query" ]; then
  mkdir -p "$bin"
  for b in lmplz build_binary query; do cp "$cache/$b" "$bin/$b.tmp" && mv "$bin/$b.tmp" "$bin/$b"; done
  if "$bin/query" --help >/dev/null 2>&1 || [ $? -le 1 ]; then
    rm -f "$prefix"/.built-*
    touch "$stamp"
    log "KenLM $version (max order $max_order) copied from the build cache $cache"
    need_bins=false
  fi
fi

# The Python side: the kenlm module and flashlight-text must load LMs of order max_order.
py_ok() {
  "$py" - "$max_order" <<'PY' 2>/dev/null
import sys
from w2vtk.lm import order_support_problems
order = int(sys.argv[1])
problems = [p for p in order_support_problems(order) if not p.startswith(("lmplz", "build_binary"))]
sys.exit(1 if problems else 0)
PY
}
need_py=false
pytag=""
if $with_python; then
  pytag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  fl_version=$("$py" -c 'from importlib.metadata import version; print(version("flashlight-text"))' 2>/dev/null || echo 0.0.7)
  wheels="$cache_root/wheels-kenlm-$tag-flashlight-$fl_version-$pytag"
  if py_ok; then
    log "the kenlm module and flashlight-text in $("$py" -c 'import sys; print(sys.prefix)') already load order-$max_order LMs"
  elif ls "$wheels"/kenlm-*.whl "$wheels"/flashlight_text-*.whl >/dev/null 2>&1; then
    "$py" -m pip install --disable-pip-version-check -q --no-deps --force-reinstall "$wheels"/*.whl
    log "installed the order-$max_order kenlm and flashlight-text wheels from the build cache $wheels"
  else
    need_py=true
  fi
fi
if ! $need_bins && ! $need_py; then
  exit 0
fi

# Build prerequisites: name every missing Debian package in one command.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
[ -f /usr/include/boost/program_options.hpp ] || missing+=(libboost-program-options-dev)
[ -f /usr/include/boost/system/error_code.hpp ] || missing+=(libboost-system-dev)
[ -f /usr/include/boost/thread.hpp ] || missing+=(libboost-thread-dev)
[ -f /usr/include/boost/test/unit_test.hpp ] || missing+=(libboost-test-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -f /usr/include/bzlib.h ] || missing+=(libbz2-dev)
[ -f /usr/include/lzma.h ] || missing+=(liblzma-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_kenlm.sh: missing build prerequisites; install them with:" >&2
  echo "  apt-get install -y ${missing[*]}" >&2
  exit 1
fi

src="$prefix/src"
mkdir -p "$src"
tarball="$src/kenlm-$version.tar.gz"
if [ ! -f "$tarball" ]; then
  log "fetching the kenlm $version sdist from PyPI"
  # The registry's simple index (PEP 691 JSON) names the sdist and its sha256; the download is verified.
  "$py" - "$version" "$tarball" <<'PY'
import hashlib, json, os, sys, urllib.request
version, out = sys.argv[1], sys.argv[2]
req = urllib.request.Request("https://pypi.org/simple/kenlm/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
with urllib.request.urlopen(req, timeout=120) as r:
    files = json.load(r)["files"]
name = f"kenlm-{version}.tar.gz"
match = [f for f in files if f["filename"] == name]
if not match:
    sys.exit(f"install_kenlm.sh: PyPI lists no {name}")
info = match[0]
with urllib.request.urlopen(info["url"], timeout=300) as r:
    data = r.read()
if hashlib.sha256(data).hexdigest() != info["hashes"]["sha256"]:
    sys.exit("install_kenlm.sh: sha256 of the downloaded sdist does not match PyPI's")
tmp = out + ".part"
with open(tmp, "wb") as fh:
    fh.write(data)
os.replace(tmp, out)
PY
fi
rm -rf "$src/kenlm-$version" "$src/build" "$src/root"
tar -xzf "$tarball" -C "$src"
log "building KenLM (max order $max_order) with $jobs jobs"
# position-independent code: the static library is linked into flashlight-text's shared objects
cmake -S "$src/kenlm-$version" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF \
  -DENABLE_PYTHON=OFF -DKENLM_MAX_ORDER="$max_order" -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DCMAKE_INSTALL_PREFIX="$src/root" >"$src/cmake.log" 2>&1 || { tail -20 "$src/cmake.log" >&2; exit 1; }
make -C "$src/build" -j "$jobs" lmplz build_binary query >"$src/make.log" 2>&1 || { tail -20 "$src/make.log" >&2; exit 1; }
if $need_bins; then
  mkdir -p "$bin"
  for b in lmplz build_binary query; do
    cp "$src/build/bin/$b" "$bin/$b.tmp" && mv "$bin/$b.tmp" "$bin/$b"
  done
  if mkdir -p "$cache" 2>/dev/null; then
    for b in lmplz build_binary query; do cp "$bin/$b" "$cache/$b.tmp" && mv "$cache/$b.tmp" "$cache/$b"; done
  fi
  rm -f "$prefix"/.built-*
  touch "$stamp"
  log "done: $bin/{lmplz,build_binary,query} (max order $max_order)"
fi

if $need_py; then
  # The kenlm module from the same sdist (its setup.py reads MAX_ORDER), then flashlight-text from its
  # PyPI sdist, configured through the environment: CMAKE_PREFIX_PATH finds this KenLM's CMake package
  # and pybind11, the toolchain file sets FL_TEXT_KENLM_MAX_ORDER, and setup.cfg's build_temp holds
  # the (empty) kenlm folder whose absence would make its setup.py download KenLM from GitHub.
  make -C "$src/build" -j "$jobs" install >"$src/install.log" 2>&1 || { tail -20 "$src/install.log" >&2; exit 1; }
  work="$src/python-o$max_order"
  rm -rf "$work" && mkdir -p "$work/wheels" "$work/build_temp/kenlm"
  pip=("$py" -m pip --disable-pip-version-check -q)
  # both builds run in this environment (--no-build-isolation: flashlight-text's setup.py imports
  # kenlm); setuptools >= 70.1 has bdist_wheel built in
  "${pip[@]}" install "setuptools>=70.1" >"$work/setuptools.log" 2>&1 || { tail -20 "$work/setuptools.log" >&2; exit 1; }
  log "building the kenlm module (MAX_ORDER=$max_order)"
  MAX_ORDER="$max_order" "${pip[@]}" wheel --no-build-isolation --no-deps -w "$work/wheels" "$tarball" \
    >"$work/kenlm.log" 2>&1 || { tail -20 "$work/kenlm.log" >&2; exit 1; }
  "${pip[@]}" install --target "$work/pybind11" pybind11 >"$work/pybind11.log" 2>&1 \
    || { tail -20 "$work/pybind11.log" >&2; exit 1; }
  pybind11_dir=$(PYTHONPATH="$work/pybind11" "$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')
  "${pip[@]}" download --no-binary :all: --no-deps -d "$work" "flashlight-text==$fl_version" \
    >"$work/download.log" 2>&1 || { tail -20 "$work/download.log" >&2; exit 1; }
  tar -xzf "$work/flashlight-text-$fl_version.tar.gz" -C "$work"
  fl_src="$work/flashlight-text-$fl_version"
  printf '\n[build_ext]\nbuild_temp = %s\n' "$work/build_temp" >>"$fl_src/setup.cfg"
  echo "set(FL_TEXT_KENLM_MAX_ORDER $max_order CACHE STRING \"KenLM max order\")" >"$work/max_order.cmake"
  log "building flashlight-text $fl_version against it"
  (cd "$fl_src" && CMAKE_TOOLCHAIN_FILE="$work/max_order.cmake" CMAKE_PREFIX_PATH="$src/root:$pybind11_dir" \
    "${pip[@]}" wheel --no-build-isolation --no-deps -w "$work/wheels" . >"$work/flashlight.log" 2>&1) \
    || { tail -20 "$work/flashlight.log" >&2; exit 1; }
  grep -q "KENLM_MAX_ORDER=$max_order" "$work/build_temp/CMakeFiles/flashlight-text-kenlm.dir/flags.make" || {
    echo "install_kenlm.sh: flashlight-text was not configured with KENLM_MAX_ORDER=$max_order" >&2; exit 1; }
  "${pip[@]}" install --no-deps --force-reinstall "$work"/wheels/*.whl
  if mkdir -p "$wheels" 2>/dev/null; then cp "$work"/wheels/*.whl "$wheels"/; fi
  rm -rf "$work" "$src/root"
  py_ok || { echo "install_kenlm.sh: the rebuilt kenlm / flashlight-text still cannot load an order-$max_order LM" >&2; exit 1; }
  log "done: the kenlm module and flashlight-text in $("$py" -c 'import sys; print(sys.prefix)') load LMs up to order $max_order"
fi
rm -rf "$src/build" "$src/kenlm-$version"
