"""The acoustic model's training criterion, CTC or ASG, behind one interface used by ``train-am``'s
trainer and its dev evaluation: how a transcript becomes a target, how many output frames a target
needs, the loss of a batch and greedy decoding.

* CTC (``torch.nn.functional.ctc_loss``, blank = token 0): targets are the token ids; a target needs
  one frame per token plus one between equal neighbours; greedy = best token per frame, repeats
  merged, blanks dropped.
* ASG (:mod:`w2vtk.am.asg`, the paper's criterion): targets are packed with the token set's
  repetition labels (``<1>`` .. ``<N>``, ``prep lang --replabel N``; no blank is ever a target); a
  target needs one frame per token; greedy = the Viterbi path under the model's learned
  ``transitions``, runs merged, repetition labels undone. ``linseg`` (wav2letter's ``--linseg``)
  switches the training loss to :func:`w2vtk.am.asg.linseg_loss` (the alignment fixed to the
  linear segmentation) for the first epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from w2vtk.am.asg import asg_loss, linseg_loss
from w2vtk.am.data import ctc_min_frames
from w2vtk.am.viterbi import viterbi
from w2vtk.errors import W2vtkError
from w2vtk.tokens import asg_token_ids, ctc_collapse, pack_replabels


class CTC:
    name = "ctc"

    def norm_size(self, labels: list[list[int]]) -> float:
        """What an update's summed loss is divided by: its target tokens (a per-token loss)."""
        return float(sum(len(lab) for lab in labels))

    def targets(self, ids: list[int]) -> list[int]:
        return list(ids)

    def min_frames(self, targets: list[int]) -> int:
        return ctc_min_frames(targets)

    def loss(self, model, logits: torch.Tensor, out_lengths: torch.Tensor, targets: list[list[int]],
             names: list[str], linseg: bool = False) -> torch.Tensor:
        """Summed -log p(target) of a batch: logits (B, T', V), out_lengths (B,)."""
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        flat = torch.tensor([i for lab in targets for i in lab], dtype=torch.long, device=logits.device)
        lengths = torch.tensor([len(lab) for lab in targets], dtype=torch.long, device=logits.device)
        return F.ctc_loss(log_probs, flat, out_lengths, lengths, blank=0, reduction="sum", zero_infinity=False)

    def greedy(self, model, logits: torch.Tensor, length: int) -> list[int]:
        """Token ids of one utterance's logits (T', V), ``length`` valid frames."""
        return ctc_collapse(logits[:length].argmax(-1).tolist())


class ASG:
    name = "asg"

    def __init__(self, replabel_ids: list[int], scaling: str = "none", surround: int | None = None):
        self.replabel_ids = list(replabel_ids)
        self.scaling = scaling
        self.surround = surround

    def norm_size(self, labels: list[list[int]]) -> float:
        """Target tokens without a loss scaling (as CTC); with one, utterances: the per-utterance
        scaled losses are averaged over the batch, as wav2letter does (so its lr carries over)."""
        return float(sum(len(lab) for lab in labels)) if self.scaling == "none" else float(len(labels))

    def targets(self, ids: list[int]) -> list[int]:
        """Packed with the repetition labels; with ``surround`` (wav2letter's ``--surround=|``) the
        word boundary also starts and ends every target."""
        if self.surround is not None:
            ids = [self.surround] + list(ids) + [self.surround]
        return pack_replabels(ids, self.replabel_ids)

    def min_frames(self, targets: list[int]) -> int:
        return len(targets)

    def loss(self, model, logits: torch.Tensor, out_lengths: torch.Tensor, targets: list[list[int]],
             names: list[str], linseg: bool = False) -> torch.Tensor:
        """Summed ASG loss of a batch (``linseg``: the linear-segmentation loss instead)."""
        b = len(targets)
        width = max(1, max(len(t) for t in targets))
        padded = torch.zeros(b, width, dtype=torch.long)
        for i, t in enumerate(targets):
            padded[i, :len(t)] = torch.tensor(t, dtype=torch.long)
        lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
        try:
            per_utt = (linseg_loss if linseg else asg_loss)(logits.float(), model.transitions, padded, lengths,
                                                            out_lengths, scaling=self.scaling, names=names)
        except ValueError as err:  # a target ASG cannot score: the utterance is named
            raise W2vtkError(str(err)) from None
        return per_utt.sum()

    def greedy(self, model, logits: torch.Tensor, length: int) -> list[int]:
        path = viterbi(logits.detach().cpu().numpy(), model.transitions.detach().cpu().numpy(), length)
        return asg_token_ids(path, self.replabel_ids)


def make_criterion(model, tokens, scaling: str = "none", surround: bool = False):
    """The criterion of ``model`` (its config's ``criterion``) for the token set ``tokens``;
    ``scaling`` and ``surround`` (word boundary around every target) are ASG's."""
    kind = getattr(model.cfg, "criterion", "ctc")
    if kind == "ctc":
        if tokens.blank != 0:
            raise W2vtkError("criterion ctc needs the blank <blk> at index 0, and this token set has none (it was "
                             "built for ASG): rebuild it with `w2vtk prep lang ... --criterion ctc`")
        return CTC()
    if kind == "asg":
        rep = tokens.replabel_ids
        if not rep:
            raise W2vtkError("criterion asg needs repetition labels in the token set: build the lang dir with "
                             "`w2vtk prep lang ... --replabel 2` (wav2letter's recipes use 1 or 2)")
        if surround and tokens.boundary is None:
            raise W2vtkError("asg_surround needs a letters token set (the word boundary '|')")
        return ASG(rep, scaling, tokens.boundary if surround else None)
    raise W2vtkError(f"model.criterion: unknown criterion {kind!r}")
