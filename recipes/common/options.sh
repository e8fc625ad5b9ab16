# Options every recipe takes, with their defaults and help lines. A run.sh sources this before its
# own options and bin/parse_options.sh (which sets any of them from --name value), and ends its
# help_message with "$(common_options_help)".
stage=0
stop_stage=6
nproc=""             # processes per stage (default: visible GPUs, 1 without CUDA)
launch_opts=""       # extra bin/launch.sh options, e.g. "--num-nodes 2 --rdzv-endpoint host:29500"
cmd=local            # local | slurm; these four are set in conf/cmd.sh (below)
cmd_opts=""          # sbatch options of every --cmd slurm job, e.g. "--partition gpu --time 600"
train_cmd_opts=""    # ... added for pretrain / train-am jobs
extract_cmd_opts=""  # ... for extraction arrays
decode_cmd_opts=""   # ... for emissions, tuning and decoding arrays
nj=""                # extraction shards, decode and tuning jobs (arrays under --cmd slurm) [nproc]
w2v_checkpoint=""    # existing wav2vec checkpoint (w2vtk or fairseq): skips stage 2
w2v_layer=c          # wav2vec features: c (the paper), z or context-N
systems="logmel wav2vec"   # the systems compared (--systems logmel: the baseline alone)
pretrain_conf=""     # default from the profile
pretrain_overrides=""
am_conf=""
am_overrides=""
score_opts=""        # extra w2vtk score options of stage 6 (the tiny profiles: --no-token-check)
criterion=""         # ctc | asg (default: the profile's; asg in the paper profiles of timit and wsj)
am_seeds=""          # e.g. "1 2 3": one AM per system and seed in $exp/am_<feat>_s<seed> (empty: one AM
                     # per system in $exp/am_<feat>, with the AM config's own seed)

# conf/cmd.sh, the cluster file a user edits once (W2VTK_CMD_CONF: another one). What it set is kept
# to tell its options from the command line's (check_cmd_options).
_cmd_conf=${W2VTK_CMD_CONF:-$root/conf/cmd.sh}
if [ -n "${W2VTK_CMD_CONF:-}" ] || [ -f "$_cmd_conf" ]; then
  [ -f "$_cmd_conf" ] || die "W2VTK_CMD_CONF=$_cmd_conf: no such file"
  # shellcheck disable=SC1090
  . "$_cmd_conf" || die "$_cmd_conf: error while sourcing it"
fi
_cmd_conf_opts="$cmd_opts|$train_cmd_opts|$extract_cmd_opts|$decode_cmd_opts"

# The help lines of the options above (with the defaults in force when it is called).
common_options_help() {
  cat <<HELP
  --stage N / --stop-stage N   run stages N..M [$stage..$stop_stage]
  --nproc N               processes per stage [visible GPUs or 1]
  --launch-opts STR       extra bin/launch.sh options for several nodes
  --cmd local|slurm       slurm: pretrain / train-am as Slurm jobs (bin/launch.sh --cmd slurm),
                          extraction, decoding and tuning trials as arrays of --nj jobs [$cmd]
  --cmd-opts STR          extra sbatch options of every such job (partition, account, time)
  --train-cmd-opts STR --extract-cmd-opts STR --decode-cmd-opts STR   more for one kind of job
                          (e.g. --train-cmd-opts '--gres gpu:8'); defaults: ${_cmd_conf:-conf/cmd.sh}
  --nj N                  extraction shards, decode / tuning array jobs [--nproc]
  --w2v-checkpoint FILE   use this wav2vec model, skip stage 2
  --w2v-layer c|z|context-N   the wav2vec layer extracted as features [$w2v_layer]
  --systems 'logmel wav2vec'   the AMs to build and compare (logmel: no pre-training) [$systems]
  --pretrain-conf FILE --pretrain-overrides 'k=v ...'   w2vtk pretrain config
  --am-conf FILE --am-overrides 'k=v ...'               w2vtk train-am config
  --score-opts STR        extra w2vtk score options of stage 6 [${score_opts:-none}]
  --criterion ctc|asg     the AM criterion; asg builds the lang with repetition labels (--replabel)
                          and trains with model.criterion=asg [${criterion:-set by the profile}]
  --am-seeds 'S1 S2 ...'  one AM per system and seed (am_<feat>_s<seed>; results: mean, min-max
                          over seeds; on a CPU the seeds train in parallel, one core each)
                          [${am_seeds:-none: one AM per system, seed of the AM config}]
  --config FILE           shell file of option defaults, sourced first
HELP
}
