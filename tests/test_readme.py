"""The README's `w2vtk ...` examples cannot rot: every fenced command must parse (its subcommand,
options and KEY=VALUE overrides, loaded with the config file it names), and those whose inputs a
test can synthesize run for real in a scratch directory."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "fairseq_wav2vec"
# Commands that need a corpus, hours of training or a trained AM + LM are parsed, not run.
RUN = {"extract", "export-fairseq", "score"}


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("w2vtk "):
                out.append(shlex.split(line.strip())[1:])
    return out


COMMANDS = readme_commands()


def test_the_readme_has_examples_of_every_stage():
    names = {c[0] for c in COMMANDS}
    assert {"pretrain", "extract", "train-am", "decode", "score", "export-fairseq"} <= names


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """(options and their values, KEY=VALUE overrides)."""
    overrides = [a for a in args if re.match(r"^[A-Za-z_][\w.]*=", a)]
    return [a for a in args if a not in overrides], overrides


def _option(args: list[str], name: str):
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_parses_and_its_overrides_load(args):
    import typer.main

    from w2vtk.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands[args[0]]
    ctx = cmd.make_context(args[0], list(args[1:]))  # unknown options / missing required: UsageError
    assert ctx.params is not None
    options, overrides = _split(args[1:])
    conf = _option(options, "--conf")
    conf = REPO / conf if conf else None
    notes: list[str] = []
    if args[0] == "pretrain":
        from w2vtk.pretrain import load_pretrain_config

        load_pretrain_config(conf, overrides, notes=notes)
    elif args[0] == "train-am":
        from w2vtk.am.config import TrainAMConfig
        from w2vtk.config import load_config

        load_config(TrainAMConfig, conf, overrides, notes=notes)
    elif args[0] == "decode":
        from w2vtk.config import load_config
        from w2vtk.decoding import DecodeConfig

        load_config(DecodeConfig, conf, overrides, notes=notes)
    else:
        assert not overrides, args
    assert notes == [], notes  # the README shows current keys, not deprecated ones


def _synthesize_inputs(root: Path) -> None:
    """What the runnable examples read, under their README paths."""
    waves = {}
    for name in ("buzz", "chirp"):
        wave, rate = sf.read(FIX / f"{name}.wav", dtype="float32")
        waves[name] = (wave, rate)
    (root / "wavs").mkdir()
    data = root / "data" / "train"
    data.mkdir(parents=True)
    for name, (wave, rate) in waves.items():
        sf.write(root / "wavs" / f"{name}.wav", wave, rate)
    (data / "wav.scp").write_text("".join(f"spk-{n} {root / 'wavs' / n}.wav\n" for n in sorted(waves)))
    (data / "utt2spk").write_text("".join(f"spk-{n} spk\n" for n in sorted(waves)))
    (data / "spk2utt").write_text("spk " + " ".join(f"spk-{n}" for n in sorted(waves)) + "\n")
    (data / "text").write_text("".join(f"spk-{n} a b\n" for n in sorted(waves)))
    (data / "role").write_text("train\n")
    shutil.copy(FIX / "small_large_args.pt", root / "wav2vec_large.pt")
    for d in ("exp/w2v", "exp/w2v_base"):
        (root / d).mkdir(parents=True)
        shutil.copy(FIX / "small_large_args.pt", root / d / "checkpoint_best.pt")
    (root / "data" / "test_eval92").mkdir(parents=True)
    (root / "data" / "test_eval92" / "text").write_text("u1 THE CAT SAT\nu2 ON THE MAT\n")
    dec = root / "exp" / "am_w2v" / "decode_eval92"
    dec.mkdir(parents=True)
    (dec / "hyp.txt").write_text("u1 THE CAT SAT\nu2 ON A MAT\n")


def test_runnable_readme_commands_run(tmp_path):
    _synthesize_inputs(tmp_path)
    ran = 0
    import os

    for args in COMMANDS:
        if args[0] not in RUN:
            continue
        if "--cmd" in args and os.environ.get("W2VTK_SLURM") != "1":
            continue  # a Slurm example runs only where the cluster tests do (opt-in)
        proc = subprocess.run([sys.executable, "-m", "w2vtk", *args], cwd=tmp_path, capture_output=True,
                              text=True)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        ran += 1
    assert ran >= 5
    assert (tmp_path / "data" / "train_fbank" / "feats.scp").is_file()
    assert (tmp_path / "data" / "train_fbank" / "role").read_text() == "train\n"  # extract keeps the role
    assert (tmp_path / "data" / "train_fbank" / "log" / "extract.log").is_file()
    assert (tmp_path / "data" / "train_w2v" / "feats.yaml").is_file()
    assert (tmp_path / "feats.scp").is_file()
    assert (tmp_path / "exp" / "w2v_base" / "wav2vec_fairseq.pt").is_file()
    assert (tmp_path / "exp" / "am_w2v" / "decode_eval92" / "wer.txt").read_text().startswith("%WER 16.67")
