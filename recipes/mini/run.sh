#!/usr/bin/env bash
# The whole wav2vec paper in miniature, on a corpus synthesized here (espeak-ng voices as
# speakers; no download, no GPU): pre-train a 64-channel wav2vec on ~30 minutes of speech, train
# letter CTC acoustic models on ~5 minutes of it with log-mel and with wav2vec features, decode
# with a word 4-gram tuned on dev, and compare WER / LER on dev and test.
#
#   bash recipes/mini/run.sh [--stage N] [--stop-stage N] [--nproc N] [--profile mini|tiny]
#
# Stages (each skips what it finished before: markers in $exp/.done/; exact commands in $exp/cmd.log):
#   0  prep:      w2vtk prep mini -> $exp/data/{train,dev,test} (+ $exp/data/train_am: the AM's
#                 --am-minutes subset of train)
#   1  lang, LM:  letters (train + dev text) -> $exp/data/lang; 4-gram + lexicon -> $exp/data/lang_4g
#   2  pretrain:  w2vtk pretrain on train (conf/tiny.yaml) -> $exp/w2v
#   3  extract:   log-mel and wav2vec features -> $exp/data/<set>_fbank, <set>_w2v
#   4  train-am:  CTC letter AMs (conf/am/tiny.yaml) -> $exp/am_fbank, $exp/am_w2v
#   5  decode:    lexicon + 4-gram, tuned on dev, applied to test
#   6  score:     WER, LER -> $exp/results.json, $exp/RESULTS.md
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/log.sh"
. "$root/recipes/common/options.sh"

exp="$here/exp"
minutes=""           # synthesized speech (mini profile: 30)
speakers=""          # pseudo-speakers (default of prep mini: 0.8 per minute)
lm_sentences=""      # extra grammar sentences for the LM text (mini profile: 20000)
seed=0               # corpus seed (same seed, same corpus)
am_minutes=""        # labeled speech for the AMs (mini profile: 5)
subset_seed=0
pretrain_data=""     # default: $exp/data/train
profile=mini         # mini (the default, < 15 min on 2 CPU cores) | tiny (tests)
decode_opts=""
help_message="Usage: $0 [options]
$(sed -n '8,17p' "$0" | sed 's/^# \{0,1\}//')
Options (defaults in brackets):
  --exp DIR               experiment root [$exp]
  --minutes M --speakers N --lm-sentences N --seed N   the synthesized corpus [profile; seed $seed]
  --am-minutes M --subset-seed N   labeled speech for the AMs [profile]
  --pretrain-data 'D...'  pre-training audio (space-separated) [train]
  --profile mini|tiny     configs (conf/profile_*.sh) [$profile]
  --decode-opts STR       extra w2vtk decode --tune options
$(common_options_help)"
orig_args=("$@")
. "$root/bin/parse_options.sh" || exit 1
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. "$root/recipes/common/lib.sh"

setup_recipe "${orig_args[@]}"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: synthesizing and preparing the mini corpus"
  mini_opts=(--minutes "$minutes" --seed "$seed" --lm-sentences "$lm_sentences")
  [ -z "$speakers" ] || mini_opts+=(--speakers "$speakers")
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
  run_step lang w2vtk prep lang --type letters --text "$data/local/lang_text" --out "$data/lang"
  run_step lm w2vtk prep lm --text "$data/local/lm_text.txt" --lang "$data/lang" --order 4 --out "$data/lang_4g"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: wav2vec pre-training"
  pretrain_stage "$(pretrain_input "$data/train")" "$data/dev"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: feature extraction"
  extract_stage train_am dev test
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: acoustic models"
  train_am_stage "$data/lang" train_am dev
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: lexicon + 4-gram decoding, tuned on dev only"
  require 1 "$data/lang_4g/lexicon.txt"
  decode_stage "$data/lang_4g" dev test
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: scoring"
  score_stage "--wer --ler" "mini corpus WER / LER (%)" dev test
fi
log "done: stages $stage..$stop_stage in $exp"
