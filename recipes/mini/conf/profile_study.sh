# The paper's two curves in miniature (stage 7), on the mini profile's corpus and configs: test WER
# against 2, 5 (stage 4's AMs) and 10 minutes of labeled speech for log-mel and wav2vec, and
# wav2vec's against 15 and all ~60 minutes of train (the main model) as pre-training audio. Every
# point: the mean and range over the three AM seeds. Cost on top of the default profile (estimated
# from the per-AM times of the study, 2 CPU cores, one thread per job): one more pre-training
# (~3 min) and 15 more AMs (~2, ~4 and ~7 min each for 2, 5 and 10 labeled minutes), ~35 min.
: "${curve_am_minutes:=2 5 10}"
: "${curve_pretrain_minutes:=15}"
# shellcheck disable=SC1091
. "$here/conf/profile_mini.sh"
