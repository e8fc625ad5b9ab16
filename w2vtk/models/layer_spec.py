"""Layer specifications ``[(dim, kernel, stride), ...]`` and their safe parsing.

fairseq stores ``conv_feature_layers`` / ``conv_aggregator_layers`` as Python expressions such as
``'[(512, 10, 5)] + [(512, 8, 4)] + [(512, 4, 2)] * 3'`` and evaluates them with ``eval``.  w2vtk
never does: :func:`parse_layer_spec` walks the expression's syntax tree and accepts only

* list and tuple literals of non-negative integer literals,
* ``list + list``,
* ``list * int`` and ``int * list``,
* parentheses (they leave no trace in the tree).

Anything else (names, calls, attributes, floats, strings, ``**``, comprehensions, ...) is refused
with a :class:`W2vtkError`.  The result is checked to be a non-empty list of ``(dim, kernel, stride)``
triples of positive integers.
"""

from __future__ import annotations

import ast
from typing import Any, Iterable, Sequence

from w2vtk.errors import W2vtkError

LayerSpec = tuple[int, int, int]

# The released models' specs (fairseq's wav2vec base defaults and the wav2vec_large checkpoint).
BASE_FEATURE_LAYERS: list[LayerSpec] = [(512, 10, 5), (512, 8, 4)] + [(512, 4, 2)] * 3
LARGE_FEATURE_LAYERS: list[LayerSpec] = BASE_FEATURE_LAYERS + [(512, 1, 1)] * 2
BASE_AGGREGATOR_LAYERS: list[LayerSpec] = [(512, 3, 1)] * 9
LARGE_AGGREGATOR_LAYERS: list[LayerSpec] = [(512, k, 1) for k in range(2, 14)]

# A spec with more layers than this is a typo or an attack (``[(1, 1, 1)] * 10**9``), not a model.
MAX_LAYERS = 1000
# Deeper nesting than this is no layer spec either; the bound keeps the tree walk off Python's
# recursion limit (``[]+[]+...`` a few thousand times is a valid 10 000-character expression).
MAX_DEPTH = 100


def _reject(what: str, text: str, where: str) -> W2vtkError:
    return W2vtkError(f"{where}: layer spec {text!r}: {what} (allowed: integer tuple/list literals, "
                      f"'+', '* integer')")


def _eval(node: ast.AST, text: str, where: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise _reject(f"nested more than {MAX_DEPTH} levels deep", text, where)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            raise _reject(f"{node.value!r} is not an integer", text, where)
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval(elt, text, where, depth + 1) for elt in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, text, where, depth + 1)
        right = _eval(node.right, text, where, depth + 1)
        if isinstance(node.op, ast.Add):
            if isinstance(left, list) and isinstance(right, list):
                out = left + right
            elif isinstance(left, tuple) and isinstance(right, tuple):
                out = left + right
            else:
                raise _reject("'+' joins two lists only", text, where)
        elif isinstance(node.op, ast.Mult):
            if isinstance(left, (list, tuple)) and isinstance(right, int):
                seq, times = left, right
            elif isinstance(left, int) and isinstance(right, (list, tuple)):
                seq, times = right, left
            else:
                raise _reject("'*' repeats a list by an integer only", text, where)
            # ``times`` alone is bounded too: ``[] * 10**20`` would overflow the repeat.
            if times < 0 or times > MAX_LAYERS or len(seq) * times > MAX_LAYERS:
                raise _reject(f"repeat count {times} out of range", text, where)
            out = seq * times
        else:
            raise _reject(f"operator {type(node.op).__name__} not allowed", text, where)
        if isinstance(out, (list, tuple)) and len(out) > MAX_LAYERS:
            raise _reject(f"more than {MAX_LAYERS} layers", text, where)
        return out
    raise _reject(f"{type(node).__name__} not allowed", text, where)


def check_layers(value: Iterable[Any], where: str = "layers", text: str | None = None) -> list[LayerSpec]:
    """Validate an already-parsed spec (list of 3-sequences of positive ints) -> list of tuples."""
    shown = text if text is not None else repr(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise W2vtkError(f"{where}: layer spec {shown!r}: expected a non-empty list of "
                         f"(dim, kernel, stride)")
    out: list[LayerSpec] = []
    for i, layer in enumerate(value):
        if (not isinstance(layer, (list, tuple)) or len(layer) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in layer)):
            raise W2vtkError(f"{where}: layer spec {shown!r}: item {i} ({layer!r}) is not a "
                             f"(dim, kernel, stride) triple of positive integers")
        out.append((int(layer[0]), int(layer[1]), int(layer[2])))
    return out


def parse_layer_spec(spec: str | Sequence[Any], where: str = "layers") -> list[LayerSpec]:
    """Parse a fairseq layer-spec expression (or check an already-parsed list).

    ``'[(512, 3, 1)] * 9'`` -> ``[(512, 3, 1)] * 9`` as a list of tuples.  ``where`` names the field
    (and file) in error messages.
    """
    if not isinstance(spec, str):
        return check_layers(spec, where)
    text = spec.strip()
    if len(text) > 10_000:
        raise W2vtkError(f"{where}: layer spec is too long ({len(text)} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):  # ValueError: a NUL byte on some Python versions
        raise W2vtkError(f"{where}: layer spec {spec!r} is not a valid expression") from None
    except (RecursionError, MemoryError):  # the parser's own nesting guards ("-" * 5000 + "1")
        raise W2vtkError(f"{where}: layer spec {spec!r} is nested too deeply") from None
    return check_layers(_eval(tree.body, spec, where), where, text=spec)


def format_layer_spec(layers: Sequence[LayerSpec]) -> str:
    """The expression fairseq writes for ``layers``: ``'[(512, 10, 5), (512, 8, 4)]'``."""
    return "[" + ", ".join(f"({d}, {k}, {s})" for d, k, s in layers) + "]"
