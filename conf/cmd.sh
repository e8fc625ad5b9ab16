# Where the recipes' jobs run: edit once per cluster, as Kaldi's cmd.sh. Every recipes/*/run.sh
# sources this file (from recipes/common/options.sh, after the common option defaults) before
# --config and the command line, so --cmd, --cmd-opts, --train-cmd-opts, ... given there still
# win. W2VTK_CMD_CONF=FILE reads FILE instead.
#
#   cmd=local   all on this machine: training through bin/launch.sh --nproc N, the rest in-process
#   cmd=slurm   each pretrain / train-am is one sbatch job (one task per node, torchrun on each;
#               --nproc is the processes per node); extraction, emissions, tuning trials and
#               decoding are sbatch --array jobs of --nj tasks, merged on the submitting machine
#
# The *_opts are sbatch options (words separated by spaces, no quotes) and are used with cmd=slurm
# only: with --cmd local on the command line, the ones set in this file are ignored (any given on
# the command line are an error). A job gets cmd_opts, then the options of its kind.
cmd=local
cmd_opts=""           # every job, e.g. "--partition speech --account asr"
train_cmd_opts=""     # pretrain and train-am, per node: e.g. "--gres gpu:8 --time 2-00:00:00 --mem 400G"
extract_cmd_opts=""   # each extraction shard (one wav2vec forward): e.g. "--gres gpu:1 --time 120"
decode_cmd_opts=""    # each emissions, tuning or decoding task (CPU, the LM in memory): e.g. "--mem 16G --time 60"
