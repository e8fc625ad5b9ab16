#!/usr/bin/env bash
# Build KenLM's lmplz, build_binary and query into tools/kenlm/bin, the way Kaldi's tools/ does:
# from the C++ source that the PyPI `kenlm` sdist ships (cmake), cached: a finished build is reused.
#
#   bash bin/install_kenlm.sh [--prefix DIR] [--version 0.3.0] [--jobs N]
#
# Needs cmake, a C++ compiler, Boost (program_options, system, thread, test), zlib, bzip2, xz.
# Finished builds are cached in ~/.cache/w2vtk (or $W2VTK_CACHE) and reused by other clones.
# When something is missing it prints the one command that installs it and exits 1.
# `w2vtk prep lm` finds the binaries in tools/kenlm/bin (or on PATH, or $KENLM_BIN).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix="$root/tools/kenlm"
version="0.3.0"
jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install_kenlm.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "$(date '+%H:%M:%S') install_kenlm: $*" >&2; }

bin="$prefix/bin"
stamp="$prefix/.built-$version"
if [ -f "$stamp" ] && [ -x "$bin/lmplz" ] && [ -x "$bin/build_binary" ] && [ -x "$bin/query" ]; then
  log "KenLM $version already built in $bin (delete $stamp to rebuild)"
  exit 0
fi

# A build from another clone on this machine is reused (the C++ build takes minutes on 2 cores).
cache="${W2VTK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/w2vtk}/kenlm-$version"
if [ -x "$cache/lmplz" ] && [ -x "$cache/build_binary" ] && [ -x "$cache/query" ]; then
  mkdir -p "$bin"
  for b in lmplz build_binary query; do cp "$cache/$b" "$bin/$b.tmp" && mv "$bin/$b.tmp" "$bin/$b"; done
  if "$bin/query" --help >/dev/null 2>&1 || [ $? -le 1 ]; then
    touch "$stamp"
    log "KenLM $version copied from the build cache $cache"
    exit 0
  fi
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

py=${PYTHON:-python3}
[ -x "$root/.venv/bin/python" ] && py="$root/.venv/bin/python"
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
rm -rf "$src/kenlm-$version" "$src/build"
tar -xzf "$tarball" -C "$src"
log "building lmplz, build_binary, query with $jobs jobs"
cmake -S "$src/kenlm-$version" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF \
  -DENABLE_PYTHON=OFF >"$src/cmake.log" 2>&1 || { tail -20 "$src/cmake.log" >&2; exit 1; }
make -C "$src/build" -j "$jobs" lmplz build_binary query >"$src/make.log" 2>&1 || { tail -20 "$src/make.log" >&2; exit 1; }
mkdir -p "$bin"
for b in lmplz build_binary query; do
  cp "$src/build/bin/$b" "$bin/$b.tmp" && mv "$bin/$b.tmp" "$bin/$b"
done
rm -rf "$src/build" "$src/kenlm-$version"
if mkdir -p "$cache" 2>/dev/null; then
  for b in lmplz build_binary query; do cp "$bin/$b" "$cache/$b.tmp" && mv "$cache/$b.tmp" "$cache/$b"; done
fi
touch "$stamp"
log "done: $bin/{lmplz,build_binary,query}"
