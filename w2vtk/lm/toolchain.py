"""The KenLM toolchain: where ``lmplz`` / ``build_binary`` are, and which LM orders every part loads."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from w2vtk.errors import W2vtkError
from w2vtk.lm.estimate import estimate_kn_arpa

KENLM_MAX_ORDER = 6  # KenLM's default, and that of PyPI's kenlm / flashlight-text wheels
MAX_LM_ORDER = 32  # largest order w2vtk accepts at all (a toolchain built with --max-order 32)

ORDER_PROBES: dict[int, list[str]] = {}


def order_support_problems(order: int) -> list[str]:
    """The parts of the KenLM toolchain that cannot handle an order-``order`` LM ([] if none).

    Each part is tried for real on a tiny LM of that order (lmplz estimates it when present, else the
    pure-Python fallback; build_binary converts it; the ``kenlm`` module and flashlight-text's ``KenLM``
    load it), because the
    compiled ``KENLM_MAX_ORDER`` of a wheel cannot be read any other way.  Orders up to 6 need no
    probe.  Results are kept per process.
    """
    if order <= KENLM_MAX_ORDER:
        return []
    if order in ORDER_PROBES:
        return ORDER_PROBES[order]
    problems: list[str] = []
    words = [f"w{i}" for i in range(order + 2)]
    sentences = [words[i:] + words[:i] for i in range(len(words))]
    with tempfile.TemporaryDirectory(prefix="w2vtk-order-probe.") as tmp:
        tmp_dir = Path(tmp)
        arpa = tmp_dir / "probe.arpa"
        lmplz = find_kenlm_binary("lmplz")
        if lmplz is not None:
            text = tmp_dir / "probe.txt"
            text.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
            proc = subprocess.run([str(lmplz), "-o", str(order), "--discount_fallback", "-S", "100M",
                                   "-T", str(tmp_dir), "--text", str(text), "--arpa", str(arpa)],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not arpa.is_file():
                problems.append(f"lmplz ({lmplz})")
        if not arpa.is_file():
            estimate_kn_arpa(sentences, order, arpa)
        build_binary = find_kenlm_binary("build_binary")
        if build_binary is not None:
            proc = subprocess.run([str(build_binary), "-S", "100M", str(arpa), str(tmp_dir / "probe.bin")],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"build_binary ({build_binary})")
        with quiet_stderr():  # KenLM prints its loading progress bar on fd 2
            try:
                import kenlm

                kenlm.Model(str(arpa))
            except ImportError:
                pass  # perplexity is then unavailable anyway; the decoder is what matters
            except Exception:  # noqa: BLE001 - KenLM raises OSError / RuntimeError / its own types
                problems.append("the kenlm Python module")
            try:
                from flashlight.lib.text.decoder.kenlm import KenLM
                from flashlight.lib.text.dictionary import Dictionary

                KenLM(str(arpa), Dictionary(words))
            except ImportError:
                problems.append("flashlight-text (not importable)")
            except Exception:  # noqa: BLE001
                problems.append("flashlight-text")
    ORDER_PROBES[order] = problems
    return problems


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where C++ libraries print) to /dev/null for the block."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_order_support(order: int, what: str) -> None:
    """Refuse (W2vtkError) an LM order that some part of the KenLM toolchain cannot load."""
    problems = order_support_problems(order)
    if problems:
        build = max(order, 20)
        raise W2vtkError(f"{what}: {', '.join(problems)} cannot load an LM of order {order} (compiled with "
                         f"a smaller KENLM_MAX_ORDER, {KENLM_MAX_ORDER} in PyPI's wheels); rebuild them with "
                         f"`bash bin/install_kenlm.sh --max-order {build} --python`")

def repo_root() -> Path:
    """The checkout that holds this package (``tools/kenlm/bin`` lives there)."""
    return Path(__file__).resolve().parents[2]


def find_kenlm_binary(name: str) -> Path | None:
    """``lmplz`` / ``build_binary`` / ``query``: from ``$KENLM_BIN``, ``tools/kenlm/bin``, then PATH."""
    candidates = []
    if os.environ.get("KENLM_BIN"):
        candidates.append(Path(os.environ["KENLM_BIN"]) / name)
    candidates.append(repo_root() / "tools" / "kenlm" / "bin" / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    return Path(found) if found else None




def run_tool(cmd: list[str], what: str, stdin=None) -> None:
    proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:])
        raise W2vtkError(f"{what} failed (exit {proc.returncode}): {tail[-400:]}")
