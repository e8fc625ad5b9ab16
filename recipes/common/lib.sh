# Shared shell helpers of recipes/*/run.sh (sourced after bin/log.sh). Recipes stay thin: every
# piece of work is one `w2vtk` command, spelled out in the recipe's own stage; these helpers only
# skip finished steps (run_step), check inputs (require), launch stages on several processes
# (launch) and run independent steps side by side (queue_step / run_queue).
#
# Expects $root (repository root) and, once options are parsed, $exp and $nproc.

# w2vtk and torchrun from the repository's venv when the caller did not activate one.
if ! command -v w2vtk >/dev/null 2>&1 && [ -x "$root/.venv/bin/w2vtk" ]; then
  PATH="$root/.venv/bin:$PATH"
fi
command -v w2vtk >/dev/null 2>&1 || die "w2vtk is not on PATH: activate its environment (bash bin/install.sh)"

# run_step NAME CMD...: run CMD unless $exp/.done/NAME says it already finished, then mark it.
# The marker holds the command line, so a rerun with other options says what it skips.
run_step() {
  local name=$1; shift
  local line
  line=$(printf '%q ' "$@")
  step_done "$name" "$line" && return 0
  log "$name: $line"
  # explicit: set -e does not stop a function called where its status is tested
  "$@" || return
  mark_done "$name" "$line"
}

# step_done NAME LINE: true (and says so) when $exp/.done/NAME marks the step finished.
step_done() {
  local marker="$exp/.done/$1" line=$2
  [ -f "$marker" ] || return 1
  if [ "$(cat "$marker")" = "$line" ]; then
    log "skip $1: done ($marker)"
  else
    log "skip $1: done with another command line (delete $marker to redo it): $(cat "$marker")"
  fi
}

# mark_done NAME LINE: records that step NAME ran LINE to the end.
mark_done() {
  local marker="$exp/.done/$1"
  mkdir -p "$exp/.done"
  printf '%s\n' "$2" > "$marker.tmp"
  mv "$marker.tmp" "$marker"
}

# Steps queued by queue_step and run together by run_queue (their names and %q-quoted commands).
_queue_names=()
_queue_lines=()
_queue_pids=()

# queue_step NAME CMD...: a run_step kept for the next run_queue. CMD is `launch STAGE ...` or a
# command; NAME names its done-marker and, when it runs in the background, $exp/log/NAME.log.
queue_step() {
  local name=$1; shift
  _queue_names+=("$name")
  _queue_lines+=("$(printf '%q ' "$@")")
}

# queue_slots: how many queued steps run at once, in $n_slots. A CPU machine running one
# process per stage (--nproc 1, one node, no CUDA) runs one step per core, each on one thread
# (OMP_NUM_THREADS=1: two-thread ops on a busy 2-core machine run several times slower);
# 0 otherwise: the steps run one after the other in the foreground, each with all GPUs / processes.
queue_slots() {
  n_slots=0
  [ "$nproc" -eq 1 ] && [ -z "$launch_opts" ] || return 0
  count_cuda
  [ "$cuda_devices" -eq 0 ] || return 0
  # GNU nproc prints $OMP_NUM_THREADS when it is set (recipes often run with 1): not the cores
  n_slots=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null \
    || echo 1)
  [ "$n_slots" -ge 1 ] || n_slots=1
}

# run_queue: runs the queued steps (see queue_slots), skipping finished ones; each background step
# writes $exp/log/NAME.log and its marker when it succeeds. Stops with one line naming the log of
# every step that failed, once all have ended.
run_queue() {
  local -a names=("${_queue_names[@]}") lines=("${_queue_lines[@]}") pending=() failed=() step=()
  local -a started=()
  _queue_names=()
  _queue_lines=()
  local i rc next=0 running=0 logfile
  [ ${#names[@]} -gt 0 ] || return 0
  queue_slots
  if [ "$n_slots" -eq 0 ]; then
    for i in "${!names[@]}"; do
      eval "step=(${lines[$i]})"
      run_step "${names[$i]}" "${step[@]}"
    done
    return 0
  fi
  for i in "${!names[@]}"; do
    step_done "${names[$i]}" "${lines[$i]}" || pending+=("$i")
  done
  [ ${#pending[@]} -gt 0 ] || return 0
  mkdir -p "$exp/log"
  log "${#pending[@]} steps, up to $n_slots at once (one per CPU core, one thread each)"
  trap '_queue_abort' INT TERM
  while [ "$next" -lt ${#pending[@]} ] || [ "$running" -gt 0 ]; do
    while [ "$running" -lt "$n_slots" ] && [ "$next" -lt ${#pending[@]} ]; do
      i=${pending[$next]}
      next=$((next + 1))
      eval "step=(${lines[$i]})"
      # one process each (side by side); bin/launch.sh execs w2vtk, so the pid is the training's
      # own (what _queue_abort stops); under --cmd slurm it is launch.sh's, which cancels its Slurm
      # job when stopped
      if [ "${step[0]}" = launch ]; then
        launch_argv 1 "" "${step[@]:1}"
        step=("${launch_line[@]}")
      fi
      logfile="$exp/log/${names[$i]}.log"
      log "${names[$i]}: started, output in $logfile: ${lines[$i]}"
      OMP_NUM_THREADS=1 "${step[@]}" > "$logfile" 2>&1 &
      _queue_pids[$i]=$!
      started[$i]=$SECONDS
      running=$((running + 1))
    done
    sleep 1
    for i in "${!_queue_pids[@]}"; do
      ! kill -0 "${_queue_pids[$i]}" 2>/dev/null || continue
      rc=0
      wait "${_queue_pids[$i]}" || rc=$?
      unset '_queue_pids[i]'
      running=$((running - 1))
      logfile="$exp/log/${names[$i]}.log"
      if [ "$rc" -eq 0 ]; then
        mark_done "${names[$i]}" "${lines[$i]}"
        log "${names[$i]}: done in $((SECONDS - started[i])) s"
      else
        log "${names[$i]}: failed (exit $rc); the end of $logfile:"
        tail -n 5 "$logfile" | sed 's/^/    /' >&2
        failed+=("${names[$i]} (exit $rc, see $logfile)")
      fi
    done
  done
  trap - INT TERM
  [ ${#failed[@]} -eq 0 ] || die "failed: $(printf '%s, ' "${failed[@]}" | sed 's/, $//')"
}

# _queue_abort: on Ctrl-C / TERM, stops the background steps (they ignore SIGINT) and the recipe.
_queue_abort() {
  local pid
  for pid in "${_queue_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  die "interrupted: stopped ${#_queue_pids[@]} running steps (a rerun resumes them)"
}

# count_cuda: the visible CUDA devices in $cuda_devices (0 without CUDA or torch), counted once.
count_cuda() {
  [ -z "${cuda_devices:-}" ] || return 0
  cuda_devices=$(python -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null) || cuda_devices=0
}

# require STAGE PATH...: stop before any work when an input of this stage is missing.
require() {
  local stage=$1; shift
  local path
  for path in "$@"; do
    [ -e "$path" ] || die "$path is missing: it is made by stage $stage (rerun with --stage $stage)"
  done
}

# launch_argv NPROC LAUNCH_OPTS STAGE ARGS...: sets $launch_line, the command that runs a w2vtk
# stage on NPROC processes (per node; LAUNCH_OPTS: more bin/launch.sh options, e.g. for nodes):
# bin/launch.sh here, or under --cmd slurm one Slurm job of bin/launch.sh (training) or, for
# extract, its shards as a Slurm array (logs OUT_DIR/log/extract.JOB.log) merged here.
launch_argv() {
  local n=$1 extra=$2
  local -a opts
  shift 2
  read -r -a opts <<< "$extra"
  if [ "$cmd" = slurm ] && [ "$1" = extract ]; then
    launch_line=(w2vtk "$@" --cmd slurm --cmd-opts "$cmd_opts $extract_cmd_opts")
  elif [ "$cmd" = slurm ]; then
    launch_line=("$root/bin/launch.sh" --cmd slurm --cmd-opts "$cmd_opts $train_cmd_opts" --nproc "$n" "${opts[@]}" "$@")
  else
    launch_line=("$root/bin/launch.sh" --nproc "$n" "${opts[@]}" "$@")
  fi
}

# launch STAGE ARGS...: a w2vtk stage on $nproc processes ($launch_opts for nodes; see launch_argv).
launch() {
  launch_argv "$nproc" "$launch_opts" "$@"
  "${launch_line[@]}"
}

# load_profile: sources conf/profile_$profile.sh of the recipe (defaults that options left empty).
# set_criterion: --criterion ctc|asg (the profile may have set its own default; ctc otherwise);
# lang_opts: what stage 1's prep lang adds for it (ASG: no blank, $replabel repetition labels).
set_criterion() {
  : "${criterion:=ctc}"
  case "$criterion" in
    ctc) lang_opts=() ;;
    asg) lang_opts=(--criterion asg --replabel "${replabel:-2}") ;;
    *) die "--criterion $criterion: expected ctc or asg" ;;
  esac
  if [ "$criterion" = ctc ] && grep -qs '^ *criterion: *asg' "$am_conf"; then
    die "--criterion ctc with the ASG config $am_conf: pass --criterion asg or a CTC --am-conf"
  fi
}

load_profile() {
  local file="$here/conf/profile_$profile.sh"
  [ -f "$file" ] || die "--profile $profile: no $file (profiles: $(cd "$here/conf" && ls profile_*.sh | sed 's/profile_//; s/\.sh//' | tr '\n' ' '))"
  # shellcheck disable=SC1090
  . "$file"
}

# save_cmdline ARGS...: the exact command line, appended to $exp/cmd.log, latest in $exp/run.cmd.
save_cmdline() {
  mkdir -p "$exp"
  local line
  line="$(printf '%q ' "$0" "$@")"
  echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') $(hostname)" >> "$exp/cmd.log"
  echo "$line" >> "$exp/cmd.log"
  echo "$line" > "$exp/run.cmd"
}

# check_stages: --stage / --stop-stage within 0..$last_stage and in order. A recipe with more than
# the usual stages 0..6 sets last_stage after parsing its options (declared before, it would be one).
check_stages() {
  local last=${last_stage:-6}
  [ "$stage" -ge 0 ] && [ "$stage" -le "$last" ] || die "--stage $stage: stages are 0..$last"
  [ "$stop_stage" -ge 0 ] && [ "$stop_stage" -le "$last" ] || die "--stop-stage $stop_stage: stages are 0..$last"
  [ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
}

# check_am_seeds: --am-seeds as canonical integers (leading zeros dropped) in $am_seeds, and in the
# array am_seed_list; with no seeds am_seed_list holds one empty word (one AM, the config's seed).
check_am_seeds() {
  local -a given
  local s seen=" "
  read -r -a given <<< "${am_seeds:-}"
  am_seed_list=()
  for s in "${given[@]}"; do
    # 18 digits at most: bash arithmetic is 64-bit
    [[ "$s" =~ ^[0-9]{1,18}$ ]] || die "--am-seeds: '$s' is not a non-negative integer (e.g. --am-seeds '1 2 3')"
    s=$((10#$s))
    [[ "$seen" != *" $s "* ]] || die "--am-seeds: seed $s is given twice"
    seen+="$s "
    am_seed_list+=("$s")
  done
  am_seeds="${am_seed_list[*]}"
  [ ${#am_seed_list[@]} -gt 0 ] || am_seed_list=("")
}

# am_tag FEAT SEED: the suffix naming one AM: fbank, or fbank_s2 for seed 2 (dir $exp/am_<tag>).
am_tag() {
  echo "$1${2:+_s$2}"
}

# resolve_nproc: the visible GPUs (1 without CUDA) when --nproc was not given.
resolve_nproc() {
  # on a cluster the submitting machine's GPUs say nothing about the nodes'
  [ "$cmd" != slurm ] || [ -n "$nproc" ] || die "--cmd slurm (${_cmd_conf:-conf/cmd.sh} or --cmd): give --nproc N, the processes of a training job per node"
  if [ -z "$nproc" ]; then
    cuda_devices=$(python -c 'import torch; print(torch.cuda.device_count())') \
      || die "cannot import torch to count GPUs; give --nproc N"
    nproc=$((cuda_devices > 1 ? cuda_devices : 1))
  fi
  [[ "$nproc" =~ ^[1-9][0-9]*$ ]] || die "--nproc $nproc: expected a positive integer"
  : "${nj:=$nproc}"
  [[ "$nj" =~ ^[1-9][0-9]*$ ]] || die "--nj $nj: expected a positive integer"
  check_cmd_options
}

# check_cmd_options: --cmd and the sbatch options. With --cmd local the options set by conf/cmd.sh
# are dropped (a local try on a cluster machine) and any given on the command line are an error.
check_cmd_options() {
  case "$cmd" in
    local)
      [ "$cmd_opts|$train_cmd_opts|$extract_cmd_opts|$decode_cmd_opts" = "$_cmd_conf_opts" ] \
        || die "--cmd-opts, --train-cmd-opts, --extract-cmd-opts and --decode-cmd-opts (command line or --config) are for --cmd slurm"
      cmd_opts="" train_cmd_opts="" extract_cmd_opts="" decode_cmd_opts="" ;;
    slurm) command -v sbatch >/dev/null || die "--cmd slurm (${_cmd_conf:-conf/cmd.sh} or --cmd): sbatch is not on PATH (bash bin/local_slurm.sh start)" ;;
    *) die "--cmd $cmd: expected local or slurm (${_cmd_conf:-conf/cmd.sh} or --cmd)" ;;
  esac
}

# setup_recipe ARGS...: what every run.sh does once its options are parsed (ARGS: its original
# command line): check the stage range, apply the profile's defaults, log the command line, settle
# the process count, and set $data.
setup_recipe() {
  check_stages
  local sys
  [ -n "${systems:-}" ] || die "--systems: name logmel, wav2vec or both"
  for sys in $systems; do
    case "$sys" in logmel|wav2vec) ;; *) die "--systems: '$sys' is not logmel or wav2vec" ;; esac
  done
  case "${w2v_layer:-c}" in
    c|z|context-[1-9]|context-[1-9][0-9]) ;;
    *) die "--w2v-layer $w2v_layer: expected c, z or context-N (N = 1, 2, ...)" ;;
  esac
  load_profile
  set_criterion
  check_am_seeds
  save_cmdline "$@"
  resolve_nproc
  data="$exp/data"
  # the override strings as words (split on spaces, never globbed: [..] in values)
  read -r -a pretrain_extra <<< "${pretrain_overrides:-}"
  read -r -a am_extra <<< "${am_overrides:-}"
  # an ASG run of a CTC config (the tiny / mini ones): the criterion as overrides, in the command,
  # with the settings ASG needs at this scale (recipes/mini/STUDY.md, session 8: wav2letter's
  # diagonal transitions and one linear-segmentation epoch) and without CTC's blank bias
  if [ "$criterion" = asg ] && ! grep -qs '^ *criterion: *asg' "$am_conf"; then
    am_extra=(model.criterion=asg model.blank_bias=0 model.transdiag=5 asg_linseg=1 "${am_extra[@]}")
  fi
  read -r -a decode_tune <<< "${decode_opts:-}"
  read -r -a decode_common <<< "${decode_common_opts:-}"
  # --cmd slurm: every decode's emissions, search (and a tuning's trials) as arrays of --nj jobs
  [ "$cmd" != slurm ] || decode_common+=(--cmd slurm --cmd-opts "$cmd_opts $decode_cmd_opts" --nj "$nj")
  read -r -a score_extra <<< "${score_opts:-}"
  w2v_model=$(w2v_checkpoint)  # what stage 3 extracts with
}

# feat_kinds: the feature kinds of --systems, in table order (logmel -> fbank, wav2vec -> w2v).
feat_kinds() {
  local out=()
  [[ " ${systems:-logmel wav2vec} " == *" logmel "* ]] && out+=(fbank)
  [[ " ${systems:-logmel wav2vec} " == *" wav2vec "* ]] && out+=(w2v)
  echo "${out[*]}"
}

# w2v_checkpoint: the wav2vec model stage 3 extracts with (--w2v-checkpoint or stage 2's best).
w2v_checkpoint() {
  if [ -n "$w2v_checkpoint" ]; then
    echo "$w2v_checkpoint"
  else
    echo "$exp/w2v/checkpoint_best.pt"
  fi
}

# pretrain_input DEFAULT: the one path stage 2 trains on. Several --pretrain-data entries that are
# data dirs are combined into $exp/data/pretrain (stage 0 makes it, so stage 2 only reads).
pretrain_input() {
  local default=$1
  local -a dirs
  read -r -a dirs <<< "$pretrain_data"
  if [ ${#dirs[@]} -eq 0 ]; then
    echo "$default"
  elif [ ${#dirs[@]} -eq 1 ]; then
    echo "${dirs[0]}"
  else
    echo "$exp/data/pretrain"
  fi
}

combine_pretrain_data() {
  local -a dirs
  read -r -a dirs <<< "$pretrain_data"
  [ ${#dirs[@]} -ge 2 ] || return 0
  local d
  for d in "${dirs[@]}"; do
    [ -f "$d/wav.scp" ] || die "--pretrain-data: '$d' is not a data dir (no wav.scp); several entries must all be data dirs (or give their common parent audio directory alone)"
  done
  run_step combine_pretrain w2vtk prep combine "$exp/data/pretrain" "${dirs[@]}"
}

# has_feat fbank|w2v: whether --systems includes that feature kind's system.
has_feat() {
  [[ " $(feat_kinds) " == *" $1 "* ]]
}

# pretrain_wanted: whether stage 2 trains a model; says why not (no wav2vec system, or
# --w2v-checkpoint names an existing model) and returns 1 otherwise.
pretrain_wanted() {
  if ! has_feat w2v; then
    log "stage 2: skipped, --systems '$systems' has no wav2vec system"
    return 1
  fi
  if [ -n "$w2v_checkpoint" ]; then
    [ -f "$w2v_checkpoint" ] || die "--w2v-checkpoint $w2v_checkpoint: no such file"
    log "stage 2: skipped, --w2v-checkpoint $w2v_checkpoint is used"
    return 1
  fi
}

# am_step NAME CMD...: one AM of stage 4. With --am-seeds the AMs are queued (run_queue trains
# several at once on a CPU, logs in $exp/log/NAME.log); without, it runs at once in the foreground.
am_step() {
  if [ -n "$am_seeds" ]; then
    queue_step "$@"
  else
    run_step "$@"
  fi
}

# score_log DECODE_DIR: the first error-rate line of a scored decode dir, for the recipe's log.
score_log() {
  log "${1#"$exp"/}: $(grep '^%' "$1/wer.txt" | head -n 1)"
}

# lang_text OUT TEXT...: the transcripts a letter set is built from. The AM's training text plus
# the dev text: on the real corpora both lie in the standard letter set (so the set is the standard
# one), and on odd or small corpora a dev letter missing from train would stop train-am's dev scoring.
lang_text() {
  local out=$1; shift
  cat "$@" | LC_ALL=C sort -u > "$out.tmp"
  mv "$out.tmp" "$out"
}
