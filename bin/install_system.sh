#!/usr/bin/env bash
# The system packages of the README table, installed unattended on Debian / Ubuntu (called by
# bin/install.sh; usable alone).
#
#   bash bin/install_system.sh [--no-system]
#
# As root: apt-get update, then apt-get install -y of whatever is missing. Otherwise through
# `sudo -n` when it works without a password (the command is printed first). Otherwise it stops
# (exit 1) and prints the one command to run. --no-system installs nothing and says once what that
# costs (KenLM's pure-Python estimator instead of lmplz, the slow desphere decoder for WSJ audio).
# On a system without apt-get / dpkg-query it checks the tools themselves and names what is missing.
set -euo pipefail
no_system=false
case "${1:-}" in
  --no-system) no_system=true ;;
  "") ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) echo "install_system.sh: unknown option $1" >&2; exit 2 ;;
esac

# ffmpeg: WSJ's shorten-compressed .wv1 audio; the rest: building KenLM's lmplz / build_binary.
packages=(ffmpeg cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev
          libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
cost="KenLM's lmplz is not built (w2vtk prep lm uses its pure-Python estimator, for small LMs) and \
WSJ's shorten audio is read by the slow pure-Python desphere decoder; the tests that need them are skipped"

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  missing=()
  for tool in ffmpeg cmake c++ make; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
  if $no_system; then
    echo "install.sh: --no-system: not installing ${missing[*]}: $cost" >&2; exit 0
  fi
  echo "install.sh: not a Debian/Ubuntu system (no apt-get); install these with your package manager:" \
       "${missing[*]} and the Boost, zlib, bzip2 and lzma headers (README \"System packages\"), or rerun" \
       "with --no-system" >&2
  exit 1
fi

# Debian splits venv / ensurepip out of python3: install.sh's `python3 -m venv` needs python3-venv.
"${PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if $no_system; then
  echo "install.sh: --no-system: not installing ${missing[*]}: $cost" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then
  echo "install.sh: installing system packages: apt-get install -y ${missing[*]}" >&2
  apt-get update -q >/dev/null || echo "install.sh: apt-get update failed; installing from the current lists" >&2
  apt-get install -y -q "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "install.sh: running: sudo apt-get install -y ${missing[*]}" >&2
  sudo -n apt-get update -q >/dev/null || echo "install.sh: apt-get update failed; installing from the current lists" >&2
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
else
  echo "install.sh: missing system packages and no root or password-less sudo; run this, then rerun:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  echo "(or rerun with --no-system: $cost)" >&2
  exit 1
fi
