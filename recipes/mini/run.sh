#!/usr/bin/env bash
# The whole wav2vec paper in miniature, on a corpus synthesized here (espeak-ng voices as
# speakers; no download, no GPU): pre-train a small wav2vec on ~60 minutes of speech, train
# letter CTC acoustic models (one per AM seed) on ~5 minutes of it with log-mel and with wav2vec
# features, decode with a word 4-gram tuned on dev, and compare WER / LER on dev and test.
# --profile study adds the paper's two curves: WER against labeled minutes, against pre-training minutes.
#
#   bash recipes/mini/run.sh [--stage N] [--stop-stage N] [--nproc N] [--profile mini|tiny|study]
#
# Stages (each skips what it finished before: markers in $exp/.done/; exact commands in $exp/cmd.log):
#   0  prep:      w2vtk prep mini -> $exp/data/{train,dev,test} (+ $exp/data/train_am: the AM's
#                 --am-minutes subset of train)
#   1  lang, LM:  letters (train + dev text) -> $exp/data/lang; 4-gram + lexicon -> $exp/data/lang_4g
#   2  pretrain:  w2vtk pretrain on train (conf/mini.yaml) -> $exp/w2v
#   3  extract:   log-mel and wav2vec features -> $exp/data/<set>_fbank, <set>_w2v
#   4  train-am:  CTC letter AMs (conf/am/mini.yaml), one per system and --am-seeds seed, in
#                 parallel on a CPU -> $exp/am_fbank_s<seed>, $exp/am_w2v_s<seed> (logs in $exp/log)
#   5  decode:    lexicon + 4-gram, tuned on dev with the first seed's AM, applied to every AM
#   6  score:     WER, LER (mean, min-max over seeds) -> $exp/results.json, $exp/RESULTS.md
#   7  curves:    only with curve points (--profile study): AMs on --curve-am-minutes of labeled
#                 speech, wav2vec pre-trained on --curve-pretrain-minutes -> $exp/curves/,
#                 $exp/w2v_p<P>m; $exp/curves.json, curve_*.png and a section of RESULTS.md
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/log.sh"
. "$root/recipes/common/options.sh"
stop_stage=7         # stage 7 does nothing without curve points

exp="$here/exp"
minutes=""           # synthesized speech, the whole corpus (mini profile: 80)
speakers=""          # pseudo-speakers (mini profile: 64; default of prep mini: 0.8 per minute)
held_speakers=""     # speakers in each of dev and test (mini profile: 8)
held_minutes=""      # minutes in each of dev and test (mini profile: 10)
lm_sentences=""      # extra grammar sentences for the LM text (mini profile: 20000)
seed=0               # corpus seed (same seed, same corpus)
am_minutes=""        # labeled speech for the AMs (mini profile: 5)
subset_seed=0
pretrain_data=""     # default: $exp/data/train
profile=mini         # mini (the default) | tiny (tests) | study (mini + the stage-7 curves)
decode_opts=""
curve_am_minutes=""        # stage 7: labeled minutes of the AM curve, e.g. "2 5 20" (study profile)
curve_pretrain_minutes=""  # stage 7: pre-training minutes below the main model's, e.g. "15 30"
help_message="Usage: $0 [options]
$(sed -n '9,22p' "$0" | sed 's/^# \{0,1\}//')
Options (defaults in brackets):
  --exp DIR               experiment root [$exp]
  --minutes M --speakers N --lm-sentences N --seed N   the synthesized corpus [profile; seed $seed]
  --held-speakers N --held-minutes M   speakers and minutes in each of dev and test [profile]
  --am-minutes M --subset-seed N   labeled speech for the AMs [profile]
  --pretrain-data 'D...'  pre-training audio (space-separated) [train]
  --profile mini|tiny|study   configs (conf/profile_*.sh) [$profile]
  --decode-opts STR       extra w2vtk decode --tune options
  --curve-am-minutes 'M...' --curve-pretrain-minutes 'P...'   stage 7's curve points [profile study]
  (--am-seeds: profiles mini and study 1 2 3, tiny 1 2)
$(common_options_help)"
orig_args=("$@")
. "$root/bin/parse_options.sh" || exit 1
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. "$root/recipes/common/lib.sh"
. "$root/recipes/common/curves.sh"
last_stage=7

setup_recipe "${orig_args[@]}"
check_curve_options
[ -z "$held_speakers" ] || [[ "$held_speakers" =~ ^[1-9][0-9]*$ ]] \
  || die "--held-speakers $held_speakers: expected a positive integer"
[ -z "$held_minutes" ] || [[ "$held_minutes" =~ ^[0-9]*\.?[0-9]+$ ]] \
  || die "--held-minutes $held_minutes: expected a positive number of minutes"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: synthesizing and preparing the mini corpus"
  mini_opts=(--minutes "$minutes" --seed "$seed" --lm-sentences "$lm_sentences")
  [ -z "$speakers" ] || mini_opts+=(--speakers "$speakers")
  [ -z "$held_speakers" ] || mini_opts+=(--held-speakers "$held_speakers")
  [ -z "$held_minutes" ] || mini_opts+=(--held-minutes "$held_minutes")
  run_step prep w2vtk prep mini "${mini_opts[@]}" "$data"
  am_hours=$(awk -v m="$am_minutes" 'BEGIN { printf "%.6g", m / 60 }')
  run_step subset_train_am w2vtk prep subset --hours "$am_hours" --seed "$subset_seed" "$data/train" "$data/train_am"
  combine_pretrain_data
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: letters and the word 4-gram"
  require 0 "$data/train/text" "$data/local/lm_text.txt"
  require 0 "$data/dev/text"
  lang_text "$data/local/lang_text" "$data/train/text" "$data/dev/text"
  run_step lang w2vtk prep lang --type letters --text "$data/local/lang_text" --out "$data/lang" "${lang_opts[@]}"
  run_step lm w2vtk prep lm --text "$data/local/lm_text.txt" --lang "$data/lang" --order 4 --out "$data/lang_4g"
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
  for set in train_am dev test; do
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
    require 3 "$data/train_am_$feat/feats.scp" "$data/dev_$feat/feats.scp"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      am_step "am_$tag" launch train-am --conf "$am_conf" --lang "$data/lang" --train "$data/train_am_$feat" \
        --valid "$data/dev_$feat" --exp "$exp/am_$tag" "${am_extra[@]}" ${seed:+"seed=$seed"}
    done
  done
  run_queue
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: lexicon + 4-gram decoding, tuned on dev only"
  require 1 "$data/lang_4g/lexicon.txt"
  for feat in $(feat_kinds); do
    # the LM weights: tuned once per system, on dev only, with the first seed's AM; applied to every AM
    first=$(am_tag "$feat" "${am_seed_list[0]}")
    tuned=$exp/am_$first/decode_dev
    require 4 "$exp/am_$first/checkpoint_last.pt"
    run_step "decode_${first}_dev" w2vtk decode --am "$exp/am_$first" --lang "$data/lang_4g" --decoder lexicon \
      --data "$data/dev_$feat" --out "$tuned" --tune --test-sets "test" "${decode_tune[@]}" \
      "${decode_common[@]}"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      require 4 "$exp/am_$tag/checkpoint_last.pt"
      for set in dev test; do
        [ "$exp/am_$tag/decode_$set" != "$tuned" ] || continue  # the tuning run decoded it
        run_step "decode_${tag}_$set" w2vtk decode --am "$exp/am_$tag" --lang "$data/lang_4g" --decoder lexicon \
          --params "$tuned/best.yaml" --data "$data/${set}_$feat" --out "$exp/am_$tag/decode_$set" \
          "${decode_common[@]}"
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
        w2vtk score --wer --ler "${score_extra[@]}" --out-dir "$dir" "$data/$set" "$dir/hyp.txt" > "$dir/score.log"
        score_log "$dir"
      done
    done
  done
  w2vtk results "$exp" --sets "dev test" --metrics "wer ler" --systems "$systems" ${am_seeds:+--seeds "$am_seeds"} \
    --title "mini corpus WER / LER (%)" --command "$(cat "$exp/run.cmd")"
  log "$(w2vtk report "$exp" 2>&1 | tail -n 1)"  # the plots as one page; RESULTS.md links it
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "stage 7: curves"
  curves_stage "--wer --ler" "$data/lang" "$data/lang_4g" train train_am dev test
fi
log "done: stages $stage..$stop_stage in $exp"
