#!/usr/bin/env bash
# WSJ with wav2vec features (Schneider et al. 2019, sec. 4.1 / Table 1): letter CTC acoustic models
# on si284 (or an --am-hours subset: the paper's low-resource ablation), a word 4-gram from the
# WSJ LM text, weights tuned on nov93dev (test_dev93), WER / LER on nov93dev and nov92
# (test_eval92); log-mel as the baseline. wav2letter's transcript normalisation (lower case,
# noise markers deleted, tokens | ' . a-z) feeds AM targets, LM text, lexicon and scoring alike.
#
#   bash recipes/wsj/run.sh --wsj0 /data/WSJ0 --wsj1 /data/WSJ1 [--stage N] [--stop-stage N]
#
# Stages (each skips what it finished before: markers in $exp/.done/; exact commands in $exp/cmd.log):
#   0  prep:      w2vtk prep wsj --transcripts wav2letter --audio-out -> $exp/data/<set>
#                 (+ $exp/data/train_si284_<H>h with --am-hours H)
#   1  lang, LM:  letters (train + dev text) -> $exp/data/lang; 4-gram (KenLM) + lexicon -> $exp/data/lang_4g
#   2  pretrain:  w2vtk pretrain on --pretrain-data (default: si284 audio) -> $exp/w2v
#                 (skipped with --w2v-checkpoint FILE, e.g. fairseq's wav2vec_large.pt)
#   3  extract:   log-mel and wav2vec features -> $exp/data/<set>_fbank, <set>_w2v
#   4  train-am:  CTC letter AMs -> $exp/am_fbank, $exp/am_w2v
#   5  decode:    lexicon + 4-gram, tuned on test_dev93, applied to test_eval92
#   6  score:     WER, LER -> $exp/results.json, $exp/RESULTS.md
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/log.sh"
. "$root/recipes/common/options.sh"

wsj0=""              # directory holding the WSJ0 discs (11-1.1 ... 11-13.1)
wsj1=""              # directory holding the WSJ1 discs (13-1.1 ... 13-34.1)
exp="$here/exp"
audio_out=""         # FLAC copies of the .wv1 files (default: $exp/flac), decoded once at stage 0
pretrain_data=""     # default: $exp/data/train_si284
am_hours=""          # e.g. 8: train the AMs on a seeded 8-hour subset of si284 (paper's ablation)
subset_seed=0
lm_add_transcripts=false  # false: the 4-gram is estimated on the WSJ LM text alone (wav2letter);
                          # true: the si284 transcripts are added to it
profile=paper
decode_opts=""       # extra `w2vtk decode --tune` options, e.g. "--trials 128"
help_message="Usage: $0 --wsj0 DIR --wsj1 DIR [options]
$(sed -n '8,20p' "$0" | sed 's/^# \{0,1\}//')
Options (defaults in brackets):
  --wsj0 DIR --wsj1 DIR   the LDC discs
  --exp DIR               experiment root [$exp]
  --audio-out DIR         FLAC copies of the audio [\$exp/flac]
  --pretrain-data 'D...'  pre-training audio (space-separated) [si284]
  --am-hours H            AMs on a seeded H-hour subset of si284 (--subset-seed) [all]
  --lm-add-transcripts true|false   add si284 transcripts to the LM text [$lm_add_transcripts]
  --profile paper|tiny    configs (conf/profile_*.sh) [$profile]
  --decode-opts STR       extra w2vtk decode --tune options
$(common_options_help)"
orig_args=("$@")
. "$root/bin/parse_options.sh" || exit 1
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. "$root/recipes/common/lib.sh"

setup_recipe "${orig_args[@]}"
[ -n "$audio_out" ] || audio_out="$exp/flac"
am_train=train_si284
if [ -n "$am_hours" ]; then
  am_train="train_si284_${am_hours}h"
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: data preparation"
  [ -n "$wsj0" ] || die "set --wsj0 to the directory holding the WSJ0 discs (11-1.1 ... 11-13.1)"
  [ -n "$wsj1" ] || die "set --wsj1 to the directory holding the WSJ1 discs (13-1.1 ... 13-34.1)"
  [ -d "$wsj0" ] || die "--wsj0 $wsj0: no such directory"
  [ -d "$wsj1" ] || die "--wsj1 $wsj1: no such directory"
  run_step prep w2vtk prep wsj --wsj0 "$wsj0" --wsj1 "$wsj1" --transcripts wav2letter \
    --audio-out "$audio_out" "$data"
  if [ -n "$am_hours" ]; then
    run_step "subset_$am_train" w2vtk prep subset --hours "$am_hours" --seed "$subset_seed" \
      "$data/train_si284" "$data/$am_train"
  fi
  combine_pretrain_data
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: letters and the word 4-gram"
  require 0 "$data/train_si284/text" "$data/local/lm_text.txt"
  require 0 "$data/test_dev93/text"
  lang_text "$data/local/lang_text" "$data/train_si284/text" "$data/test_dev93/text"
  run_step lang w2vtk prep lang --type letters --text "$data/local/lang_text" --out "$data/lang" "${lang_opts[@]}"
  lm_text="$data/local/lm_text.txt"
  if [ "$lm_add_transcripts" = true ]; then
    lm_text="$data/local/lm_text_si284.txt"
    { cat "$data/local/lm_text.txt"; cut -d' ' -f2- "$data/train_si284/text"; } > "$lm_text.tmp"
    mv "$lm_text.tmp" "$lm_text"
  fi
  # wav2letter's WSJ vocabulary leaves out words with digits
  run_step lm w2vtk prep lm --text "$lm_text" --lang "$data/lang" --order 4 --exclude-digits \
    --out "$data/lang_4g"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: wav2vec pre-training"
  if pretrain_wanted; then
    pretrain_data_dir=$(pretrain_input "$data/train_si284")
    require 0 "$pretrain_data_dir" "$data/test_dev93"
    run_step pretrain launch pretrain --conf "$pretrain_conf" --data "$pretrain_data_dir" --valid "$data/test_dev93" \
      --exp "$exp/w2v" "${pretrain_extra[@]}"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: feature extraction"
  if has_feat w2v; then require 2 "$w2v_model"; fi
  for set in "$am_train" test_dev93 test_eval92; do
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
    require 3 "$data/${am_train}_$feat/feats.scp" "$data/test_dev93_$feat/feats.scp"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      am_step "am_$tag" launch train-am --conf "$am_conf" --lang "$data/lang" --train "$data/${am_train}_$feat" \
        --valid "$data/test_dev93_$feat" --exp "$exp/am_$tag" "${am_extra[@]}" ${seed:+"seed=$seed"}
    done
  done
  run_queue
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: lexicon + 4-gram decoding, tuned on test_dev93 (nov93dev) only"
  require 1 "$data/lang_4g/lexicon.txt"
  for feat in $(feat_kinds); do
    # the LM weights: tuned once per system, on test_dev93 only, with the first seed's AM; applied to every AM
    first=$(am_tag "$feat" "${am_seed_list[0]}")
    tuned=$exp/am_$first/decode_test_dev93
    require 4 "$exp/am_$first/checkpoint_last.pt"
    run_step "decode_${first}_test_dev93" w2vtk decode --am "$exp/am_$first" --lang "$data/lang_4g" --decoder lexicon \
      --data "$data/test_dev93_$feat" --out "$tuned" --tune --test-sets "test_eval92" "${decode_tune[@]}" \
      "${decode_common[@]}"
    for seed in "${am_seed_list[@]}"; do
      tag=$(am_tag "$feat" "$seed")
      require 4 "$exp/am_$tag/checkpoint_last.pt"
      for set in test_dev93 test_eval92; do
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
      for set in test_dev93 test_eval92; do
        dir=$exp/am_$(am_tag "$feat" "$seed")/decode_$set
        require 5 "$dir/hyp.txt"
        w2vtk score --wer --ler "${score_extra[@]}" --out-dir "$dir" "$data/$set" "$dir/hyp.txt" > "$dir/score.log"
        score_log "$dir"
      done
    done
  done
  w2vtk results "$exp" --sets "test_dev93 test_eval92" --metrics "wer ler" --systems "$systems" ${am_seeds:+--seeds "$am_seeds"} \
    --title "WSJ WER / LER (%), test_dev93 = nov93dev, test_eval92 = nov92" --command "$(cat "$exp/run.cmd")"
  log "$(w2vtk report "$exp" 2>&1 | tail -n 1)"  # the plots as one page; RESULTS.md links it
fi

log "done: stages $stage..$stop_stage in $exp"
