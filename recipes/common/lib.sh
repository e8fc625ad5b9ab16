# Shared shell helpers of recipes/*/run.sh (sourced after bin/log.sh). Recipes stay thin: every
# piece of work is one `w2vtk` command; these helpers only skip finished steps, check inputs and
# launch stages on several processes.
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
  local marker="$exp/.done/$name" line
  line=$(printf '%q ' "$@")
  if [ -f "$marker" ]; then
    if [ "$(cat "$marker")" = "$line" ]; then
      log "skip $name: done ($marker)"
    else
      log "skip $name: done with another command line (delete $marker to redo it): $(cat "$marker")"
    fi
    return 0
  fi
  log "$name: $line"
  "$@"
  mkdir -p "$exp/.done"
  printf '%s\n' "$line" > "$marker.tmp"
  mv "$marker.tmp" "$marker"
}

# require STAGE PATH...: stop before any work when an input of this stage is missing.
require() {
  local stage=$1; shift
  local path
  for path in "$@"; do
    [ -e "$path" ] || die "$path is missing: it is made by stage $stage (rerun with --stage $stage)"
  done
}

# launch STAGE ARGS...: a w2vtk stage on $nproc processes (bin/launch.sh; $launch_opts for nodes).
launch() {
  local -a opts
  read -r -a opts <<< "$launch_opts"
  "$root/bin/launch.sh" --nproc "$nproc" "${opts[@]}" "$@"
}

# load_profile: sources conf/profile_$profile.sh of the recipe (defaults that options left empty).
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

# check_stages: --stage / --stop-stage within 0..6 and in order.
check_stages() {
  [ "$stage" -ge 0 ] && [ "$stage" -le 6 ] || die "--stage $stage: stages are 0..6"
  [ "$stop_stage" -ge 0 ] && [ "$stop_stage" -le 6 ] || die "--stop-stage $stop_stage: stages are 0..6"
  [ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
}

# resolve_nproc: the visible GPUs (1 without CUDA) when --nproc was not given.
resolve_nproc() {
  if [ -z "$nproc" ]; then
    nproc=$(python -c 'import torch; print(max(1, torch.cuda.device_count()))') \
      || die "cannot import torch to count GPUs; give --nproc N"
  fi
  [[ "$nproc" =~ ^[1-9][0-9]*$ ]] || die "--nproc $nproc: expected a positive integer"
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
  save_cmdline "$@"
  resolve_nproc
  data="$exp/data"
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

# pretrain_stage DATA VALID: stage 2, unless --w2v-checkpoint names an existing model.
pretrain_stage() {
  local data=$1 valid=$2
  if [[ " $(feat_kinds) " != *" w2v "* ]]; then
    log "stage 2: skipped, --systems '$systems' has no wav2vec system"
    return 0
  fi
  if [ -n "$w2v_checkpoint" ]; then
    [ -f "$w2v_checkpoint" ] || die "--w2v-checkpoint $w2v_checkpoint: no such file"
    log "stage 2: skipped, --w2v-checkpoint $w2v_checkpoint is used"
    return 0
  fi
  require 0 "$data" "$valid"
  local -a extra
  read -r -a extra <<< "$pretrain_overrides"  # split on spaces, never glob ([..] in values)
  run_step pretrain launch pretrain --conf "$pretrain_conf" --data "$data" --valid "$valid" \
    --exp "$exp/w2v" "${extra[@]}"
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

# extract_stage SET...: stage 3, log-mel (float32) and wav2vec (float16) feature data dirs.
extract_stage() {
  local ckpt="" set kinds
  kinds=" $(feat_kinds) "
  if [[ "$kinds" == *" w2v "* ]]; then
    ckpt=$(w2v_checkpoint)
    require 2 "$ckpt"
  fi
  for set in "$@"; do
    require 0 "$exp/data/$set/wav.scp"
  done
  for set in "$@"; do
    [[ "$kinds" == *" fbank "* ]] && run_step "extract_fbank_$set" launch extract --type logmel \
      --in "$exp/data/$set" --out-dir "$exp/data/${set}_fbank" --num-shards "$nproc" --resume
    [[ "$kinds" == *" w2v "* ]] || continue
    run_step "extract_w2v_$set" launch extract --type wav2vec --checkpoint "$ckpt" --dtype float16 \
      --layer "${w2v_layer:-c}" --in "$exp/data/$set" --out-dir "$exp/data/${set}_w2v" --num-shards "$nproc" --resume
  done
}

# train_am_stage LANG TRAIN DEV: stage 4, one CTC acoustic model per feature type.
train_am_stage() {
  local lang=$1 train=$2 dev=$3 feat
  require 1 "$lang/tokens.txt"
  for feat in $(feat_kinds); do
    require 3 "$exp/data/${train}_$feat/feats.scp" "$exp/data/${dev}_$feat/feats.scp"
  done
  local -a extra
  read -r -a extra <<< "$am_overrides"
  for feat in $(feat_kinds); do
    run_step "am_$feat" launch train-am --conf "$am_conf" --lang "$lang" --train "$exp/data/${train}_$feat" \
      --valid "$exp/data/${dev}_$feat" --exp "$exp/am_$feat" "${extra[@]}"
  done
}

# decode_stage LANG DEV TEST...: stage 5. With a word LM in LANG (lm.bin): the weights are tuned
# on DEV only (`decode --tune`; the TEST sets are named so decode refuses to tune on them), then
# applied to every TEST set. Without one: greedy decoding of every set. $decode_opts goes to --tune,
# $decode_common_opts to every decode (e.g. "--set metrics=[per]").
decode_stage() {
  local lang=$1 dev=$2; shift 2
  local feat set out tests
  for feat in $(feat_kinds); do
    require 4 "$exp/am_$feat/checkpoint_last.pt"
    for set in "$dev" "$@"; do
      require 3 "$exp/data/${set}_$feat/feats.scp"
    done
  done
  tests=$(IFS=,; echo "$*")
  local -a tune common
  read -r -a tune <<< "${decode_opts:-}"
  read -r -a common <<< "${decode_common_opts:-}"
  for feat in $(feat_kinds); do
    if [ -f "$lang/lm.bin" ] || [ -f "$lang/lm.arpa" ]; then
      out="$exp/am_$feat/decode_$dev"
      run_step "decode_${feat}_$dev" w2vtk decode --am "$exp/am_$feat" --lang "$lang" --decoder lexicon \
        --data "$exp/data/${dev}_$feat" --out "$out" --tune --test-sets "${tests:-none}" "${tune[@]}" \
        "${common[@]}"
      for set in "$@"; do
        run_step "decode_${feat}_$set" w2vtk decode --am "$exp/am_$feat" --lang "$lang" --decoder lexicon \
          --params "$out/best.yaml" --data "$exp/data/${set}_$feat" --out "$exp/am_$feat/decode_$set" \
          "${common[@]}"
      done
    else
      for set in "$dev" "$@"; do
        run_step "decode_${feat}_$set" w2vtk decode --am "$exp/am_$feat" --decoder greedy \
          --data "$exp/data/${set}_$feat" --out "$exp/am_$feat/decode_$set" "${common[@]}"
      done
    fi
  done
}

# score_stage "METRIC_FLAGS" TITLE SET...: stage 6. Scores every decode dir against the set's own
# text (reports in the decode dir), then the results table, results.json and RESULTS.md.
score_stage() {
  local flags=$1 title=$2; shift 2
  local feat set dir
  for feat in $(feat_kinds); do
    for set in "$@"; do
      require 5 "$exp/am_$feat/decode_$set/hyp.txt"
    done
  done
  for feat in $(feat_kinds); do
    for set in "$@"; do
      dir="$exp/am_$feat/decode_$set"
      # shellcheck disable=SC2086
      w2vtk score $flags --out-dir "$dir" "$exp/data/$set" "$dir/hyp.txt" > "$dir/score.log"
      log "$feat $set: $(grep '^%' "$dir/wer.txt" | head -n 1)"
    done
  done
  local metrics
  metrics=$(echo "$flags" | sed 's/--//g')
  # shellcheck disable=SC2086
  # shellcheck disable=SC2086
  python -m w2vtk.results --exp "$exp" --sets "$@" --metrics $metrics --systems $systems --title "$title" \
    --command "$(cat "$exp/run.cmd")"
}

# lang_text OUT TEXT...: the transcripts a letter set is built from. The AM's training text plus
# the dev text: on the real corpora both lie in the standard letter set (so the set is the standard
# one), and on odd or small corpora a dev letter missing from train would stop train-am's dev scoring.
lang_text() {
  local out=$1; shift
  cat "$@" | LC_ALL=C sort -u > "$out.tmp"
  mv "$out.tmp" "$out"
}
