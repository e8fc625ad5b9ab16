# Tiny configs for tests and CI: the 64-channel wav2vec of conf/tiny.yaml for a few updates, the
# tiny AM of conf/am/tiny.yaml for two epochs. Its numbers mean nothing: it checks that every
# stage connects, in a minute or two on a CPU.
: "${pretrain_conf:=$root/conf/tiny.yaml}"
: "${pretrain_overrides:=optim.max_update=4 optim.warmup_updates=2 checkpoint.valid_every=2 checkpoint.save_every=2 \
log_every=1 data.max_tokens=64000 data.max_sample_size=16000}"
: "${am_conf:=$root/conf/am/tiny.yaml}"
: "${am_overrides:=max_epochs=2 schedule.warmup_updates=2 amp=none average_last=0}"
# Its AMs are untrained: an ASG one (--criterion asg; no blank to fall silent with) emits words of no
# reference, which w2vtk score would refuse as a wrong token set.
: "${score_opts:=--no-token-check}"
