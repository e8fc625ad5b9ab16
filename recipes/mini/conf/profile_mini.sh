# The mini recipe's own configs (there is no paper setup for a synthesized corpus): 80 minutes of
# espeak speech from 64 pseudo-speakers, dev and test 10 minutes and 8 held-out voices each (60
# minutes of train, 48 voices never heard in dev or test), the wav2vec of conf/mini.yaml
# pre-trained on train, the AM of conf/am/mini.yaml (both systems) on 5 minutes of labeled speech
# with three AM seeds, the decoder tuned once per system (32 trials, the fast beam of
# conf/decode/fast.yaml, also used for every other decode). recipes/mini/STUDY.md says why.
: "${minutes:=80}"
: "${speakers:=64}"
: "${held_speakers:=8}"
: "${held_minutes:=10}"
: "${lm_sentences:=20000}"
: "${am_minutes:=5}"
: "${am_seeds:=1 2 3}"
: "${pretrain_conf:=$root/conf/mini.yaml}"
: "${am_conf:=$root/conf/am/mini.yaml}"
: "${decode_opts:=--trials 32}"
: "${decode_common_opts:=--conf $root/conf/decode/fast.yaml}"
