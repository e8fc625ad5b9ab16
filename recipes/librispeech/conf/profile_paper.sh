# The paper's LibriSpeech pre-training (Schneider et al. 2019): wav2vec base (conf/base.yaml) on
# the 80-hour clean subset; with --pretrain-subsets train_960 use conf/large.yaml
# (--pretrain-conf), as the released wav2vec_large.pt. AM: wav2letter's gated ConvNet on letters
# (conf/am/wsj.yaml: the paper trains AMs on WSJ and TIMIT only; this recipe's AM is an addition).
: "${pretrain_conf:=$root/conf/base.yaml}"
: "${am_conf:=$root/conf/am/wsj.yaml}"
: "${decode_opts:=--trials 128}"
: "${pretrain_hours:=80}"
