#!/usr/bin/env bash
# TIMIT phone recognition with wav2vec features (Schneider et al. 2019, sec. 4.2 / Table 3):
# a conv AM on 39 phones, PER on dev and the core test, no word LM; log-mel as the baseline.
#
#   bash recipes/timit/run.sh --corpus /data/TIMIT [--stage N] [--stop-stage N] [--nproc N]
#
# Stages (each skips what it finished before: markers in $exp/.done/; exact commands in $exp/cmd.log):
#   0  prep:      w2vtk prep timit           -> $exp/data/{train,dev,test}   (test = core test)
#   1  lang:      w2vtk prep lang --type phones --phone-set 39 -> $exp/data/lang
#   2  pretrain:  w2vtk pretrain on --pretrain-data (default: TIMIT train audio) -> $exp/w2v
#                 (skipped with --w2v-checkpoint FILE, e.g. fairseq's wav2vec_large.pt)
#   3  extract:   log-mel and wav2vec features -> $exp/data/<set>_fbank, <set>_w2v
#   4  train-am:  CTC acoustic models -> $exp/am_fbank, $exp/am_w2v
#   5  decode:    greedy (no LM), dev and test -> $exp/am_*/decode_<set>/hyp.txt
#   6  score:     PER (both sides folded to 39) -> $exp/results.json, $exp/RESULTS.md
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/log.sh"
. "$root/recipes/common/options.sh"

corpus=""            # TIMIT directory (TRAIN/ and TEST/, any case)
exp="$here/exp"      # everything goes below it
pretrain_data=""     # audio dirs / data dirs to pre-train on (default: $exp/data/train)
profile=paper        # paper | tiny (tests / CI: minutes on a CPU)
decode_common_opts="metrics=[per]"  # decode scores phones (PER), not words
help_message="Usage: $0 --corpus /path/to/TIMIT [options]
$(sed -n '4,15p' "$0" | sed 's/^# \{0,1\}//')
Options (defaults in brackets):
  --corpus DIR            TIMIT copy [$corpus]
  --exp DIR               experiment root [$exp]
  --pretrain-data 'D...'  pre-training audio (space-separated) [TIMIT train]
  --profile paper|tiny    configs: paper (conf/profile_paper.sh) or tiny (CPU minutes) [$profile]
$(common_options_help)"
orig_args=("$@")
. "$root/bin/parse_options.sh" || exit 1
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. "$root/recipes/common/lib.sh"

setup_recipe "${orig_args[@]}"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: data preparation"
  [ -n "$corpus" ] || die "set --corpus to the TIMIT directory (the one holding TRAIN/ and TEST/)"
  [ -d "$corpus" ] || die "--corpus $corpus: no such directory"
  run_step prep w2vtk prep timit "$corpus" "$data"
  combine_pretrain_data
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: phone set (39 phones, as the paper); no word LM for TIMIT"
  require 0 "$data/train/text"
  run_step lang w2vtk prep lang --type phones --phone-set 39 --text "$data/train/text" --out "$data/lang" \
    "${lang_opts[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: wav2vec pre-training"
  if pretrain_wanted; then
    pretrain_data_dir=$(pretrain_input "$data/train")
    require 0 "$pretrain_data_dir" "$data/dev"
    run_step pretrain launch pretrain --conf "$pretrain_conf" --data "$pretrain_data_dir" --valid "$data/dev" \
      --exp "$exp/w2v" "${pretrain_extra[@]}"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: feature extraction"
  if has_feat w2v; then require 2 "$w2v_model"; fi
  for set in train dev test; do
    require 0 "$data/$set/wav.scp"
    if has_feat fbank; then
      run_step "extract_fbank_$set" launch extract --type logmel --in "$data/$set" --out-dir "$data/${set}_fbank" \
        --num-shards "$nj" --resume
    fi
    if has_feat w2v; then
      run_step "extract_w2v_$set" launch extract --type wav2vec --checkpoint "$w2v_model" --dtype float16 \
        --layer "$w2v_layer" --in "$data/$set" --out-dir "$data/${set}_w2v" --num-shards "$nj" --resume
    fi
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: acoustic models"
  require 1 "$data/lang/tokens.txt"
  for feat in $(feat_kinds); do
    require 3 "$data/train_$feat/feats.scp" "$data/dev_$feat/feats.scp"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      am_step "am_$tag" launch train-am --conf "$am_conf" --lang "$data/lang" --train "$data/train_$feat" \
        --valid "$data/dev_$feat" --exp "$exp/am_$tag" "${am_extra[@]}" ${seed:+"seed=$seed"}
    done
  done
  run_queue
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: greedy decoding (the paper reports TIMIT without an LM)"
  for feat in $(feat_kinds); do
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      require 4 "$exp/am_$tag/checkpoint_last.pt"
      for set in dev test; do
        run_step "decode_${tag}_$set" w2vtk decode --am "$exp/am_$tag" --decoder greedy --data "$data/${set}_$feat" \
          --out "$exp/am_$tag/decode_$set" "${decode_common[@]}"
      done
    done
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: scoring"
  for feat in $(feat_kinds); do
    for seed in "${am_seed_list[@]}"; do
      for set in dev test; do
        dir=$exp/am_$(am_tag "$feat" "$seed")/decode_$set
        require 5 "$dir/hyp.txt"
        w2vtk score --per "${score_extra[@]}" --out-dir "$dir" "$data/$set" "$dir/hyp.txt" > "$dir/score.log"
        score_log "$dir"
      done
    done
  done
  w2vtk results "$exp" --sets "dev test" --metrics "per" --systems "$systems" ${am_seeds:+--seeds "$am_seeds"} \
    --title "TIMIT PER (%), dev and core test" --command "$(cat "$exp/run.cmd")"
  log "$(w2vtk report "$exp" 2>&1 | tail -n 1)"  # the plots as one page; RESULTS.md links it
fi

log "done: stages $stage..$stop_stage in $exp"
