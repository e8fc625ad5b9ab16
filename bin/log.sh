# Logging helpers for recipe scripts: source it, then
#   log "stage 2: pre-training"      -> 2026-11-25 13:40:02 (run.sh:87:main) stage 2: pre-training
#   die "no corpus; set --corpus"    -> the same line prefixed "error:", then exit 1
# Lines go to stderr so that a stage's stdout stays the command's own output.

log() {
  local where="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
  local func="${FUNCNAME[1]:-main}"
  [ "$func" = source ] && func=main
  echo "$(date '+%Y-%m-%d %H:%M:%S') ($where:$func) $*" >&2
}

die() {
  local where="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
  echo "$(date '+%Y-%m-%d %H:%M:%S') ($where) error: $*" >&2
  exit 1
}
