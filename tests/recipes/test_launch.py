"""bin/launch.sh: the command it builds for one node, several nodes and one process, its option
errors, and a real two-process (gloo, CPU) pre-training run on the mini corpus."""

from __future__ import annotations

import json

import pytest

from recipe_helpers import ROOT

LAUNCH = ROOT / "bin" / "launch.sh"


@pytest.mark.parametrize("args,expected", [
    (["--nproc", "1", "extract", "--in", "d"], "w2vtk extract --in d"),
    (["--nproc", "2", "pretrain", "--data", "d"],
     "torchrun --standalone --nnodes=1 --nproc-per-node=2 -m w2vtk pretrain --data d"),
    (["--nproc", "4", "--num-nodes", "2", "--node-rank", "1", "--master-addr", "node1", "--master-port", "29500",
      "train-am", "--exp", "e"],
     "torchrun --nnodes=2 --node-rank=1 --master-addr=node1 --master-port=29500 --nproc-per-node=4 "
     "-m w2vtk train-am --exp e"),
    (["--nproc", "8", "--num-nodes", "3", "--rdzv-endpoint", "host:29400", "--rdzv-id", "job7", "pretrain"],
     "torchrun --nnodes=3 --rdzv-backend=c10d --rdzv-endpoint=host:29400 --rdzv-id=job7 --nproc-per-node=8 "
     "-m w2vtk pretrain"),
    # one process per node but several nodes still needs torchrun
    (["--nproc", "1", "--num-nodes", "2", "--rdzv-endpoint", "h:1", "extract"],
     "torchrun --nnodes=2 --rdzv-backend=c10d --rdzv-endpoint=h:1 --rdzv-id=w2vtk --nproc-per-node=1 -m w2vtk extract"),
])
def test_command_lines(run, args, expected):
    res = run([LAUNCH, "--dry-run", "true", *args])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == expected


def test_default_nproc_without_cuda_is_one(run):
    res = run([LAUNCH, "--dry-run", "true", "extract"], CUDA_VISIBLE_DEVICES="")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "w2vtk extract"


@pytest.mark.parametrize("args,message", [
    (["--nproc", "2", "--num-nodes", "2", "pretrain"], "needs --master-addr HOST --master-port PORT"),
    (["--num-nodes", "2", "--node-rank", "2", "--master-addr", "h", "--master-port", "1", "pretrain"],
     "--node-rank 2 must be below --num-nodes 2"),
    (["--nproc", "0", "pretrain"], "--nproc must be a positive integer"),
    (["--nproc", "2"], "no w2vtk stage given"),
    (["--gpus", "2", "pretrain"], "unknown option --gpus"),
    (["--cmd", "pbs", "pretrain"], "--cmd pbs: expected local or slurm"),
    (["--cmd-opts", "--time 5", "pretrain"], "--cmd-opts is for --cmd slurm"),
])
def test_errors(run, args, message):
    res = run([LAUNCH, *args])
    assert res.returncode == 1
    assert message in res.stderr


def test_slurm_job_script_and_sbatch_line(run, tmp_path):
    # --cmd slurm --dry-run: the sbatch line (nodes, one task each, the user's options last) and the
    # task script srun runs: launch.sh again per node with a c10d rendezvous on the first node
    res = run([LAUNCH, "--cmd", "slurm", "--num-nodes", "3", "--nproc", "4", "--cmd-opts", "--partition gpu --time 60",
               "--dry-run", "true", "train-am", "--exp", tmp_path / "am", "--conf", "c.yaml"])
    assert res.returncode == 0, res.stderr
    log = tmp_path / "am" / "log"
    assert res.stdout.split() == [
        "sbatch", "--wait", "--parsable", "--job-name=train-am", "--nodes=3", "--ntasks-per-node=1",
        "--cpus-per-task=4", "--export=ALL", f"--chdir={ROOT}", "-o", f"{log}/train-am.sbatch.log", "--partition",
        "gpu", "--time", "60", f"{log}/q/train-am.sh", "train-am", "--exp", str(tmp_path / "am"), "--conf", "c.yaml"]
    script = (log / "q" / "train-am.sh").read_text()
    assert "srun --kill-on-bad-exit=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} " \
           f"-o {log}/train-am.%t.log bash {ROOT}/bin/launch.sh --num-nodes 3 --nproc 4 " \
           '--rdzv-endpoint "$head:$port" --rdzv-id "$SLURM_JOB_ID" "$@"' in script


def _pretrain_args(mini_corpus, exp):
    return ["pretrain", "--conf", ROOT / "conf/tiny.yaml", "--data", mini_corpus / "train", "--exp", exp,
            "optim.max_update=2", "optim.warmup_updates=1", "checkpoint.valid_every=2", "checkpoint.save_every=2",
            "log_every=1", "data.max_tokens=32000", "data.max_sample_size=16000"]


def test_two_gloo_processes_pretrain(run, mini_corpus, tmp_path):
    exp = tmp_path / "w2v"
    res = run([LAUNCH, "--nproc", "2", *_pretrain_args(mini_corpus, exp)], CUDA_VISIBLE_DEVICES="",
              OMP_NUM_THREADS="1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "torchrun --standalone --nnodes=1 --nproc-per-node=2 -m w2vtk pretrain" in out
    assert (exp / "checkpoint_last.pt").is_file()
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert max(r.get("update", 0) for r in records) == 2
    assert [r["world_size"] for r in records if r.get("split") == "start"] == [2]

    # the same job as two one-process "nodes" on localhost (two launch.sh invocations, node ranks 0
    # and 1, static rendezvous): the same model, since sampling does not depend on how ranks are placed
    import socket
    import subprocess

    import torch

    from recipe_helpers import script_env
    from w2vtk.checkpoint import load_checkpoint

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    nodes_exp = tmp_path / "w2v_nodes"
    procs = [subprocess.Popen(["bash", str(LAUNCH), "--nproc", "1", "--num-nodes", "2", "--node-rank", str(r),
                               "--master-addr", "127.0.0.1", "--master-port", port,
                               *map(str, _pretrain_args(mini_corpus, nodes_exp))],
                              cwd=ROOT, env=script_env(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert "--nnodes=2 --node-rank=1 --master-addr=127.0.0.1" in outs[1]
    one, two = (load_checkpoint(d / "checkpoint_last.pt") for d in (exp, nodes_exp))
    assert one["model"].keys() == two["model"].keys()
    for k in one["model"]:
        assert torch.equal(one["model"][k], two["model"][k]), k
    assert two["train_state"]["world_size"] == 2
