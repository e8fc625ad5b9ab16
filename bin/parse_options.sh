# Kaldi-compatible option parsing for recipe scripts.  Source it (with NO arguments, so that it
# works on and shifts the caller's own "$@") after declaring every option as a shell variable:
#
#   stage=0            # --stage N
#   use_gpu=true       # --use-gpu true|false
#   help_message="Usage: run.sh [options]"
#   . bin/parse_options.sh || exit 1
#   # "$@" now holds the arguments after the options
#
# Rules (those of Kaldi's utils/parse_options.sh, plus two checks of the value's kind):
#   --foo-bar VALUE   sets foo_bar; an option whose variable was not declared is an error
#   --config FILE     sourced first (wherever it appears), so the command line overrides it
#   --help, -h        prints $help_message and exits 0
#   --name=VALUE      is rejected: options and values are separate words
#   a variable whose default is true/false only takes true or false
#   a variable whose default is an integer only takes an integer
#   --                ends the options; so does the first argument that does not start with --
# A list-valued option takes one word with spaces: --pretrain-data "dir1 dir2".
# Errors print one line on stderr and return 1 (the caller's `|| exit 1` stops the script).

_po_die() {
  echo "${0##*/}: $*" >&2
  return 1
}

# Pass 1: source every --config FILE before anything else.
_po_i=1
while [ "$_po_i" -le $# ]; do
  _po_arg=${!_po_i}
  if [ "$_po_arg" = "--" ]; then
    break
  fi
  if [ "$_po_arg" = "--config" ]; then
    _po_j=$((_po_i + 1))
    if [ "$_po_j" -gt $# ]; then
      _po_die "option --config needs a file" || return 1
    fi
    _po_file=${!_po_j}
    if [ ! -f "$_po_file" ]; then
      _po_die "--config: no such file: $_po_file" || return 1
    fi
    # shellcheck disable=SC1090
    . "$_po_file" || { _po_die "--config: error while sourcing $_po_file" || return 1; }
    _po_i=$((_po_i + 2))
    continue
  fi
  case "$_po_arg" in
    --*) _po_i=$((_po_i + 2)) ;;  # skip the option's value
    *) break ;;
  esac
done

# Pass 2: the options themselves, in order.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "$help_message"
      else
        echo "${0##*/}: no help message"
      fi
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --config)
      shift 2  # already sourced in pass 1
      ;;
    --*=*)
      _po_die "write '${1%%=*} ${1#*=}' (two words), not '$1'" || return 1
      ;;
    --?*)
      _po_name=${1#--}
      _po_name=${_po_name//-/_}
      case "$_po_name" in
        *[!a-zA-Z0-9_]*|[0-9]*)
          _po_die "invalid option $1" || return 1
          ;;
      esac
      # An option exists exactly when its variable was declared (set, maybe empty) beforehand.
      if [ -z "${!_po_name+set}" ]; then
        _po_die "unknown option $1 (see --help)" || return 1
      fi
      if [ $# -lt 2 ]; then
        _po_die "option $1 needs a value" || return 1
      fi
      _po_old=${!_po_name}
      _po_new=$2
      if [ "$_po_old" = true ] || [ "$_po_old" = false ]; then
        if [ "$_po_new" != true ] && [ "$_po_new" != false ]; then
          _po_die "option $1 takes true or false, not '$_po_new'" || return 1
        fi
      elif [[ "$_po_old" =~ ^-?[0-9]+$ ]] && ! [[ "$_po_new" =~ ^-?[0-9]+$ ]]; then
        _po_die "option $1 takes an integer, not '$_po_new'" || return 1
      fi
      printf -v "$_po_name" '%s' "$_po_new"
      shift 2
      ;;
    *)
      break
      ;;
  esac
done

unset -f _po_die
unset _po_i _po_j _po_arg _po_file _po_name _po_old _po_new
true
