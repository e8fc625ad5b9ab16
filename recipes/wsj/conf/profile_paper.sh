# The paper's WSJ setup (Schneider et al. 2019): wav2vec (base shape, conf/base.yaml) pre-trained
# on the si284 audio by default; the released wav2vec_large.pt (LibriSpeech 960 h) can be given
# with --w2v-checkpoint. AM: wav2letter's 17-layer gated ConvNet on letters, trained with ASG as in
# the paper (conf/am/wsj_asg.yaml, two repetition labels; --criterion ctc: conf/am/wsj.yaml).
: "${pretrain_conf:=$root/conf/base.yaml}"
: "${criterion:=asg}"
: "${replabel:=2}"
if [ "$criterion" = asg ]; then : "${am_conf:=$root/conf/am/wsj_asg.yaml}"; fi
: "${am_conf:=$root/conf/am/wsj.yaml}"
: "${decode_opts:=--trials 128}"
