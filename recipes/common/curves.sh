# Stage 7 of recipes/mini/run.sh (sourced after lib.sh): the paper's two curves in miniature, WER
# against minutes of labeled audio (log-mel and wav2vec) and WER of wav2vec against minutes of
# pre-training audio. Each point is a mean over the AM seeds (--am-seeds), decoded with its
# system's stage-5 parameters (no retuning). The shell only makes the subsets, models and decodes;
# `w2vtk results EXP --curves` collects them into curves.json, two plots and RESULTS.md.

# minutes_list OPTION VAR: the amounts in $VAR rewritten canonically (5.0 -> 5, as the curve dirs
# and curves.json keys spell them); stops with one line on a non-positive number or a repeat.
minutes_list() {
  local opt=$1 var=$2 m label
  local -a given out=()
  read -r -a given <<< "${!var:-}"
  for m in "${given[@]}"; do
    [[ "$m" =~ ^[0-9]*\.?[0-9]+$ ]] && label=$(awk -v m="$m" 'BEGIN { printf "%g", m }') \
      && [ "$label" != 0 ] || die "$opt: '$m' is not a positive number of minutes"
    [[ " ${out[*]} " != *" $label "* ]] || die "$opt: $label minutes is given twice"
    out+=("$label")
  done
  printf -v "$var" '%s' "${out[*]}"
}

# check_curve_options: --curve-am-minutes and --curve-pretrain-minutes, checked before any work.
check_curve_options() {
  minutes_list --curve-am-minutes curve_am_minutes
  minutes_list --curve-pretrain-minutes curve_pretrain_minutes
}

# queue_curve_am TAG TRAIN DEV SEED: a curve point's AM in $exp/curves/am_TAG, trained on the
# feature dirs $data/TRAIN and $data/DEV (uses curves_stage's $lang and $extra).
queue_curve_am() {
  queue_step "curves_am_$1" launch train-am --conf "$am_conf" --lang "$lang" --train "$data/$2" \
    --valid "$data/$3" --exp "$exp/curves/am_$1" "${extra[@]}" "seed=$4"
}

# curves_stage "METRIC_FLAGS" LANG LM TRAIN AM_TRAIN DEV TEST: stage 7 (see the top of this file).
#   labeled curve: per M in $curve_am_minutes, $data/AM_TRAIN_<M>m (prep subset of TRAIN, seed
#     $subset_seed) and its features, AMs in $exp/curves/am_<feat>_<M>m_s<seed>;
#   pre-training curve (wav2vec): per P in $curve_pretrain_minutes, $data/pretrain_<P>m (subset of
#     the pre-training data), a model in $exp/w2v_p<P>m (same config), its features of AM_TRAIN, DEV
#     and TEST, AMs in $exp/curves/am_w2v_p<P>m_s<seed>.
# The point of the recipe's own amount (--am-minutes; the main model $exp/w2v) is stage 4's AMs.
curves_stage() {
  local flags=$1 lang=$2 lm=$3 train=$4 am_train=$5 dev=$6 test=$7
  local -a am_points pre_points new_am=() kept=() sets=() extra decodes=() args
  local kinds feat seed m p tag suffix am dir best main_am main_pre="" src set metrics first=${am_seed_list[0]}
  read -r -a am_points <<< "${curve_am_minutes:-}"
  read -r -a pre_points <<< "${curve_pretrain_minutes:-}"
  if [ ${#am_points[@]} -eq 0 ] && [ ${#pre_points[@]} -eq 0 ]; then
    log "stage 7: skipped, no curve points (--profile study, or --curve-am-minutes / --curve-pretrain-minutes)"
    return 0
  fi
  [ -n "$am_seeds" ] || die "stage 7: the curves need --am-seeds (each point is a mean over AM seeds)"
  kinds=" $(feat_kinds) "
  if [ ${#pre_points[@]} -gt 0 ] && [[ "$kinds" != *" w2v "* ]]; then
    log "stage 7: no pre-training curve: --systems '$systems' has no wav2vec system"
    pre_points=()
  elif [ ${#pre_points[@]} -gt 0 ] && [ -n "$w2v_checkpoint" ]; then
    log "stage 7: no pre-training curve: the model of --w2v-checkpoint was not pre-trained here"
    pre_points=()
  fi

  require 0 "$data/$train/wav.scp" "$data/$am_train/wav.scp" "$data/$dev/wav.scp" "$data/$test/wav.scp"
  require 1 "$lang/tokens.txt" "$lm/lexicon.txt"
  for feat in $(feat_kinds); do
    require 5 "$exp/am_$(am_tag "$feat" "$first")/decode_$dev/best.yaml"
    for seed in "${am_seed_list[@]}"; do
      require 6 "$exp/am_$(am_tag "$feat" "$seed")/decode_$dev/score.json" \
        "$exp/am_$(am_tag "$feat" "$seed")/decode_$test/score.json"
    done
  done
  [[ "$kinds" != *" w2v "* ]] || require 2 "$w2v_model"
  main_am=$(awk -v m="$am_minutes" 'BEGIN { printf "%g", m }')
  for m in "${am_points[@]}"; do
    [ "$m" = "$main_am" ] || new_am+=("$m")
  done
  if [ ${#pre_points[@]} -gt 0 ]; then
    src=$(pretrain_input "$data/$train")
    [ -f "$src/utt2dur" ] || die "stage 7: the pre-training curve takes subsets of a data dir with utt2dur; the pre-training data $src has none"
    # the main model's amount, to 0.1 minute: the curve's last point
    main_pre=$(awk '{ s += $2 } END { printf "%g", int(s / 6 + 0.5) / 10 }' "$src/utt2dur")
    for p in "${pre_points[@]}"; do
      if awk -v p="$p" -v t="$main_pre" 'BEGIN { exit !(p < t) }'; then
        kept+=("$p")
      else
        log "stage 7: no model for $p pre-training minutes: not below the main model's $main_pre minutes ($exp/w2v, the curve's last point)"
      fi
    done
    pre_points=("${kept[@]}")
  fi

  log "stage 7: labeled subsets and their features"
  for m in "${new_am[@]}"; do
    run_step "subset_${am_train}_${m}m" w2vtk prep subset --hours "$(awk -v m="$m" 'BEGIN { printf "%.6g", m / 60 }')" \
      --seed "$subset_seed" "$data/$train" "$data/${am_train}_${m}m"
    sets+=("${am_train}_${m}m")
  done
  for set in "${sets[@]}"; do
    if has_feat fbank; then
      run_step "extract_fbank_$set" launch extract --type logmel --in "$data/$set" --out-dir "$data/${set}_fbank" \
        --num-shards "$nproc" --resume
    fi
    if has_feat w2v; then
      run_step "extract_w2v_$set" launch extract --type wav2vec --checkpoint "$w2v_model" --dtype float16 \
        --layer "$w2v_layer" --in "$data/$set" --out-dir "$data/${set}_w2v" --num-shards "$nproc" --resume
    fi
  done

  if [ ${#pre_points[@]} -gt 0 ]; then
    log "stage 7: pre-training on subsets of $src (${pre_points[*]} minutes; the main model: $main_pre)"
    read -r -a extra <<< "$pretrain_overrides"
    for p in "${pre_points[@]}"; do
      run_step "subset_pretrain_${p}m" w2vtk prep subset --hours "$(awk -v p="$p" 'BEGIN { printf "%.6g", p / 60 }')" \
        --seed "$subset_seed" "$src" "$data/pretrain_${p}m"
      queue_step "pretrain_p${p}m" launch pretrain --conf "$pretrain_conf" --data "$data/pretrain_${p}m" \
        --valid "$data/$dev" --exp "$exp/w2v_p${p}m" "${extra[@]}"
    done
    run_queue
    for p in "${pre_points[@]}"; do
      for set in "$am_train" "$dev" "$test"; do
        run_step "extract_w2v_p${p}m_$set" launch extract --type wav2vec --checkpoint "$exp/w2v_p${p}m/checkpoint_best.pt" \
          --dtype float16 --layer "$w2v_layer" --in "$data/$set" --out-dir "$data/${set}_w2v_p${p}m" \
          --num-shards "$nproc" --resume
      done
    done
  fi

  log "stage 7: acoustic models of the curve points"
  read -r -a extra <<< "$am_overrides"
  for feat in $(feat_kinds); do
    for m in "${new_am[@]}"; do
      for seed in "${am_seed_list[@]}"; do
        tag="${feat}_${m}m_s$seed"
        queue_curve_am "$tag" "${am_train}_${m}m_$feat" "${dev}_$feat" "$seed"
        decodes+=("$tag $feat $feat")  # AM, feature-dir suffix, the system whose best.yaml applies
      done
    done
  done
  for p in "${pre_points[@]}"; do
    for seed in "${am_seed_list[@]}"; do
      tag="w2v_p${p}m_s$seed"
      queue_curve_am "$tag" "${am_train}_w2v_p${p}m" "${dev}_w2v_p${p}m" "$seed"
      decodes+=("$tag w2v_p${p}m w2v")
    done
  done
  run_queue

  log "stage 7: decoding with each system's stage-5 parameters, scoring"
  for m in "${decodes[@]}"; do
    read -r tag suffix feat <<< "$m"
    am="$exp/curves/am_$tag"
    best="$exp/am_$(am_tag "$feat" "$first")/decode_$dev/best.yaml"
    for set in "$dev" "$test"; do
      dir="$am/decode_$set"
      run_step "decode_curves_${tag}_$set" w2vtk decode --am "$am" --lang "$lm" --decoder lexicon \
        --params "$best" --data "$data/${set}_$suffix" --out "$dir" "${decode_common[@]}"
      if ! [ "$dir/score.json" -nt "$dir/hyp.txt" ]; then
        # shellcheck disable=SC2086
        w2vtk score $flags "${score_extra[@]}" --out-dir "$dir" "$data/$set" "$dir/hyp.txt" > "$dir/score.log"
      fi
      log "curves $tag $set: $(grep '^%' "$dir/wer.txt" | head -n 1)"
    done
  done

  metrics=$(echo "$flags" | sed 's/--//g')
  args=(--sets "$dev $test" --metrics "$metrics" --systems "$systems" --seeds "${am_seed_list[*]}"
        --plot-set "$test")
  [ ${#am_points[@]} -eq 0 ] || args+=(--am-minutes "${am_points[*]}" --main-am-minutes "$main_am")
  [ ${#pre_points[@]} -eq 0 ] || args+=(--pretrain-minutes "${pre_points[*]}" --main-pretrain-minutes "$main_pre")
  if [ ${#am_points[@]} -eq 0 ] && [ ${#pre_points[@]} -eq 0 ]; then
    log "stage 7: no curve left to collect"
    return 0
  fi
  w2vtk results "$exp" --curves "${args[@]}"
}
