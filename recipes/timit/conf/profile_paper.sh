# The paper's TIMIT setup (Schneider et al. 2019): wav2vec large-shaped model (the released
# wav2vec_large.pt was pre-trained on LibriSpeech 960 h; to reproduce Table 3 pass it with
# --w2v-checkpoint, or pre-train on LibriSpeech with recipes/librispeech), the 7-layer conv / PReLU
# phone AM of conf/am/timit.yaml, trained with ASG as in the paper (conf/am/timit_asg.yaml, one
# repetition label for the phones that repeat after folding; --criterion ctc: conf/am/timit.yaml).
# Options given on the command line win over these defaults.
: "${pretrain_conf:=$root/conf/large.yaml}"
: "${criterion:=asg}"
: "${replabel:=1}"
if [ "$criterion" = asg ]; then : "${am_conf:=$root/conf/am/timit_asg.yaml}"; fi
: "${am_conf:=$root/conf/am/timit.yaml}"
