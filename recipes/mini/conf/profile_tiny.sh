# Tests and CI: a 1.5-minute corpus of 6 speakers, a few pre-training updates, two AM epochs,
# two AM seeds.
# Its numbers mean nothing: it checks that every stage connects.
: "${minutes:=1.5}"
: "${speakers:=6}"
: "${lm_sentences:=2000}"
: "${am_minutes:=1}"
: "${am_seeds:=1 2}"
: "${pretrain_conf:=$root/conf/tiny.yaml}"
: "${pretrain_overrides:=optim.max_update=4 optim.warmup_updates=2 checkpoint.valid_every=2 checkpoint.save_every=2 \
log_every=1 data.max_tokens=64000 data.max_sample_size=16000}"
: "${am_conf:=$root/conf/am/tiny.yaml}"
: "${am_overrides:=max_epochs=2 schedule.warmup_updates=2 amp=none average_last=0}"
: "${decode_opts:=--trials 2}"
# Its AMs are untrained: an ASG one (--criterion asg; no blank to fall silent with) emits words of no
# reference, which w2vtk score would refuse as a wrong token set.
: "${score_opts:=--no-token-check}"
