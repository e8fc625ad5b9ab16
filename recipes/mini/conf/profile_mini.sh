# The mini recipe's own configs (there is no paper setup for a synthesized corpus): ~30 minutes of
# espeak speech, the 64-channel wav2vec of conf/tiny.yaml (2000 updates of 20 s), the tiny AM of
# conf/am/tiny.yaml (40 epochs) on 5 minutes of labeled speech, 32 decoding trials.
: "${minutes:=30}"
: "${lm_sentences:=20000}"
: "${am_minutes:=5}"
: "${pretrain_conf:=$root/conf/tiny.yaml}"
: "${am_conf:=$root/conf/am/tiny.yaml}"
: "${decode_opts:=--trials 32}"
