#!/usr/bin/env bash
# LibriSpeech with wav2vec features (Schneider et al. 2019): wav2vec pre-trained on an 80-hour
# clean subset of train-clean-100 (the paper's "Libri 80h"; or --pretrain-subsets train_960 for
# all 960 h), letter CTC acoustic models on a labeled subset (default train_clean_100), decoding
# with a word 4-gram (the official OpenSLR 11 4-gram.arpa.gz when prep found it, else one
# estimated from the LM text), tuned on dev_clean, WER / LER on dev_clean and the test sets.
# By default every LibriSpeech subset present under --corpus is prepared and used.
#
#   bash recipes/librispeech/run.sh --corpus /data/LibriSpeech [--lm-dir /data/openslr11] [--stage N]
#
# Stages (each skips what it finished before: markers in $exp/.done/; exact commands in $exp/cmd.log):
#   0  prep:      w2vtk prep librispeech -> $exp/data/<subset> (dev_clean, train_clean_100, ...);
#                 the pre-training set: prep subset --hours 80 --seed over train_clean_100
#                 -> $exp/data/train_clean_100_80h (made at run time, see RESULTS.md)
#   1  lang, LM:  letters (train + dev text) -> $exp/data/lang; 4-gram + lexicon -> $exp/data/lang_4g
#   2  pretrain:  w2vtk pretrain -> $exp/w2v (skipped with --w2v-checkpoint FILE)
#   3  extract:   log-mel and wav2vec features -> $exp/data/<set>_fbank, <set>_w2v
#   4  train-am:  CTC letter AMs -> $exp/am_fbank, $exp/am_w2v
#   5  decode:    lexicon + 4-gram, tuned on dev_clean, applied to the other evaluation sets
#   6  score:     WER, LER -> $exp/results.json, $exp/RESULTS.md
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/log.sh"
. "$root/recipes/common/options.sh"

corpus=""            # LibriSpeech/ or the directory holding it
lm_dir=""            # OpenSLR 11 files (4-gram.arpa.gz, librispeech-lm-norm.txt.gz, ...)
exp="$here/exp"
train_subsets=""     # labeled subsets for the AMs (default: train_clean_100)
pretrain_subsets=""  # subsets to pre-train on (default: the seeded --pretrain-hours subset of
                     # train_clean_100); e.g. "train_960"
pretrain_hours=""    # size of that subset (paper profile: 80 h, the paper's)
subset_seed=0
pretrain_data=""     # other audio dirs / data dirs to pre-train on (overrides the two above)
official_lm=true     # use the official 4-gram.arpa.gz when prep linked it
dev_set=dev_clean    # tuning set
test_sets=""         # default: those of dev_other test_clean test_other that are present
profile=paper
decode_opts=""
help_message="Usage: $0 --corpus DIR [options]
$(sed -n '10,21p' "$0" | sed 's/^# \{0,1\}//')
Options (defaults in brackets):
  --corpus DIR            LibriSpeech/ or its parent
  --lm-dir DIR            OpenSLR 11 LM resources [LibriSpeech/ and its parent]
  --exp DIR               experiment root [$exp]
  --train-subsets 'S...'  labeled subsets for the AMs [train_clean_100]
  --pretrain-subsets 'S...'  pre-training subsets [the --pretrain-hours subset of train_clean_100]
  --pretrain-hours H --subset-seed N   the pre-training subset [80 h (paper profile), seed $subset_seed]
  --pretrain-data 'D...'  other pre-training audio (space-separated data dirs or one audio dir)
  --official-lm true|false   decode with the official 4-gram when present [$official_lm]
  --dev-set SET --test-sets 'SET...'   tuning / evaluation sets [$dev_set / present ones]
  --profile paper|tiny    configs (conf/profile_*.sh) [$profile]
  --decode-opts STR       extra w2vtk decode --tune options
$(common_options_help)"
orig_args=("$@")
. "$root/bin/parse_options.sh" || exit 1
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. "$root/recipes/common/lib.sh"

setup_recipe "${orig_args[@]}"

# Subset names as data-dir names: dev-clean -> dev_clean; commas or spaces between them.
norm_sets() { echo "$1" | tr ',-' ' _' | xargs; }
train_subsets=$(norm_sets "${train_subsets:-train_clean_100}")
pretrain_subsets=$(norm_sets "$pretrain_subsets")
read -r -a train_list <<< "$train_subsets"
if [ ${#train_list[@]} -eq 1 ]; then
  am_train=${train_list[0]}
else
  am_train="train_am"  # the labeled subsets combined at stage 0
fi
pretrain_set="train_clean_100_${pretrain_hours}h"
if [ -n "$pretrain_subsets" ]; then
  read -r -a pt_list <<< "$pretrain_subsets"
  if [ ${#pt_list[@]} -eq 1 ]; then pretrain_set=${pt_list[0]}; else pretrain_set="train_pretrain"; fi
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: data preparation"
  [ -n "$corpus" ] || die "set --corpus to the LibriSpeech directory (or the directory holding LibriSpeech/)"
  [ -d "$corpus" ] || die "--corpus $corpus: no such directory"
  lm_opt=()
  [ -z "$lm_dir" ] || lm_opt=(--lm-dir "$lm_dir")
  run_step prep w2vtk prep librispeech "${lm_opt[@]}" "$corpus" "$data"
  for s in $train_subsets $pretrain_subsets $dev_set $(norm_sets "$test_sets"); do
    [ -f "$data/$s/wav.scp" ] || die "subset $s was not found under --corpus $corpus (prepared: $(cd "$data" && ls -d */ | tr -d / | grep -v local | xargs))"
  done
  if [ ${#train_list[@]} -gt 1 ]; then
    run_step combine_train w2vtk prep combine "$data/$am_train" "${train_list[@]/#/$data/}"
  fi
  if [ -z "$pretrain_subsets" ] && [ -z "$pretrain_data" ]; then
    # The paper's 80-hour clean subset: made here from train-clean-100, speaker-balanced and
    # seeded, so the same corpus and seed give the same list (its utt ids end up in
    # $data/$pretrain_set/utt2spk).
    require 0 "$data/train_clean_100/utt2dur"
    run_step "subset_$pretrain_set" w2vtk prep subset --hours "$pretrain_hours" --seed "$subset_seed" \
      "$data/train_clean_100" "$data/$pretrain_set"
  elif [ -n "$pretrain_subsets" ] && [ ${#pt_list[@]} -gt 1 ]; then
    run_step combine_pretrain_subsets w2vtk prep combine "$data/$pretrain_set" "${pt_list[@]/#/$data/}"
  fi
  combine_pretrain_data
fi

# Evaluation sets: by default those prepared (stage 0 prepares every subset present).
if [ -z "$test_sets" ]; then
  for s in dev_other test_clean test_other; do
    [ ! -f "$data/$s/wav.scp" ] || test_sets="$test_sets $s"
  done
  [ -n "$test_sets" ] || [ "$stop_stage" -lt 3 ] \
    || log "warning: no evaluation set besides $dev_set (none of dev_other test_clean test_other prepared)"
fi
test_sets=$(norm_sets "$test_sets")
# shellcheck disable=SC2206
eval_sets=($test_sets)

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: letters and the word 4-gram"
  require 0 "$data/$am_train/text" "$data/local/lm_text.txt"
  require 0 "$data/$dev_set/text"
  lang_text "$data/local/lang_text" "$data/$am_train/text" "$data/$dev_set/text"
  run_step lang w2vtk prep lang --type letters --text "$data/local/lang_text" --out "$data/lang" "${lang_opts[@]}"
  if [ "$official_lm" = true ] && [ -e "$data/local/4-gram.arpa.gz" ]; then
    # prep lm reads plain ARPA text: decompress the official model once
    if [ ! -f "$data/local/4-gram.arpa" ]; then
      gzip -dc "$data/local/4-gram.arpa.gz" > "$data/local/4-gram.arpa.tmp"
      mv "$data/local/4-gram.arpa.tmp" "$data/local/4-gram.arpa"
    fi
    run_step lm w2vtk prep lm --arpa "$data/local/4-gram.arpa" --lang "$data/lang" --out "$data/lang_4g"
  else
    run_step lm w2vtk prep lm --text "$data/local/lm_text.txt" --lang "$data/lang" --order 4 \
      --out "$data/lang_4g"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: wav2vec pre-training"
  if pretrain_wanted; then
    pretrain_data_dir=$(pretrain_input "$data/$pretrain_set")
    require 0 "$pretrain_data_dir" "$data/${dev_set}"
    run_step pretrain launch pretrain --conf "$pretrain_conf" --data "$pretrain_data_dir" --valid "$data/${dev_set}" \
      --exp "$exp/w2v" "${pretrain_extra[@]}"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: feature extraction"
  if has_feat w2v; then require 2 "$w2v_model"; fi
  for set in "$am_train" "$dev_set" "${eval_sets[@]}"; do
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
  log "stage 4: acoustic models on $am_train"
  require 1 "$data/lang/tokens.txt"
  for feat in $(feat_kinds); do
    require 3 "$data/${am_train}_$feat/feats.scp" "$data/${dev_set}_$feat/feats.scp"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      am_step "am_$tag" launch train-am --conf "$am_conf" --lang "$data/lang" --train "$data/${am_train}_$feat" \
        --valid "$data/${dev_set}_$feat" --exp "$exp/am_$tag" "${am_extra[@]}" ${seed:+"seed=$seed"}
    done
  done
  run_queue
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: lexicon + 4-gram decoding, tuned on $dev_set only"
  require 1 "$data/lang_4g/lexicon.txt"
  for feat in $(feat_kinds); do
    # the LM weights: tuned once per system, on $dev_set only, with the first seed's AM; applied to every AM
    first=$(am_tag "$feat" "${am_seed_list[0]}")
    tuned=$exp/am_$first/decode_${dev_set}
    require 4 "$exp/am_$first/checkpoint_last.pt"
    run_step "decode_${first}_${dev_set}" w2vtk decode --am "$exp/am_$first" --lang "$data/lang_4g" --decoder lexicon \
      --data "$data/${dev_set}_$feat" --out "$tuned" --tune --test-sets "$(IFS=,; echo "${eval_sets[*]:-none}")" \
      "${decode_tune[@]}" "${decode_common[@]}"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      require 4 "$exp/am_$tag/checkpoint_last.pt"
      for set in "$dev_set" "${eval_sets[@]}"; do
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
      for set in "$dev_set" "${eval_sets[@]}"; do
        dir=$exp/am_$(am_tag "$feat" "$seed")/decode_$set
        require 5 "$dir/hyp.txt"
        w2vtk score --wer --ler "${score_extra[@]}" --out-dir "$dir" "$data/$set" "$dir/hyp.txt" > "$dir/score.log"
        score_log "$dir"
      done
    done
  done
  w2vtk results "$exp" --sets "$dev_set ${eval_sets[*]}" --metrics "wer ler" --systems "$systems" ${am_seeds:+--seeds "$am_seeds"} \
    --title "LibriSpeech WER / LER (%)" --command "$(cat "$exp/run.cmd")"
  log "$(w2vtk report "$exp" 2>&1 | tail -n 1)"  # the plots as one page; RESULTS.md links it
fi

log "done: stages $stage..$stop_stage in $exp"
