"""Hypothesis strategies and checks shared by tests/reliability/test_fuzz_parsers.py.

The strategies are biased toward *near-valid* input: a valid file of the kind a parser expects,
with a few mutations (one field replaced by a nasty token, a line dropped, duplicated or swapped,
a NUL / CR / invalid UTF-8 byte inserted, the final newline removed, ...), so that the parsers'
deep paths get explored and not only their first UTF-8 check.  Pure garbage (random bytes,
random text made of awkward characters) is mixed in.

:func:`mutated_file` returns ``(raw bytes, number of mutations)``: a test asserts that an
unmutated file parses, and that any file either parses or raises :class:`W2vtkError`.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from w2vtk.errors import W2vtkError

# derandomize: CI explores the same examples every run; database=None: no .hypothesis dir.
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])


def fuzz(max_examples: int) -> settings:
    return settings(FUZZ, max_examples=max_examples)


# Characters that break naive parsers: whitespace str.split() knows but " " / "\t" splitting does
# not, line breaks str.splitlines() knows but "\n" splitting does not, NUL, BOM, zero-width space,
# non-ASCII digits (str.isdigit() true, int() may refuse), astral plane, syntax characters.
NASTY_CHARS = ("\x00\r\t\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u202f\u3000"
               "\ufeff\u200b\u00b2\u0663\u00e9\u4e2d\U0001d11e|:;#<>[](){}~*'\"\\/-_.,=+!%&?@`$^")
NASTY_TOKENS = [
    "", " ", "\t", "nan", "NaN", "inf", "-inf", "-1", "0", "00", "1e999", "1e-400", "-0", "\u00b2",
    "\u0661\u0662", "0x10", "1_0", "9" * 5000, "0" * 5000, "<s>", "</s>", "#0", "|", "<blk>", "~/x",
    "a|b", "cmd |", " |", "x" * 3000, "\ufeff", "True", "null", "[", "{", "- ", ": ", "&a", "*a",
    "!!python/object:os.system", "!!timestamp x", "2001-13-01", "%YAML 1.1", "---", "\x00",
    "\u2028", "\x85", "a\x0bb", ";", "#", ";;;", "(", ")", "[noise]", "<", ">", "a:1", "a:-5",
    "a:1[0:2]", "a:99999999999999999999", "a:1[", ":", "\\", "%PERCENT", "\x1c",
]
NASTY_BYTES = [b"\x00", b"\r", b"\r\n", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\n\n",
               b"\t", b" ", b"\xe2\x80\xa8", b"\x85", b"\x80\x80"]

nasty_token = st.one_of(st.sampled_from(NASTY_TOKENS),
                        st.text(alphabet=NASTY_CHARS + string.ascii_letters + string.digits,
                                max_size=12))
nasty_text = st.text(alphabet=st.one_of(st.sampled_from(NASTY_CHARS),
                                        st.characters(blacklist_categories=("Cs",))), max_size=200)


def ids(min_size: int = 1, max_size: int = 6) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.ascii_lowercase + string.digits, min_size=min_size,
                   max_size=max_size)


words = st.text(alphabet="abcdefgh'", min_size=1, max_size=6)


def _mutate_lines(draw, lines: list[list[str]]) -> tuple[list[list[str]], bool, bytes | None, int]:
    """Apply 0..3 line-level mutations; returns (lines, final newline, byte insertion, count)."""
    final_newline = True
    n = draw(st.integers(0, 3))
    for _ in range(n):
        op = draw(st.sampled_from(["set_field", "set_field", "drop_field", "add_field", "dup_line",
                                   "swap", "del_line", "empty_line", "no_newline", "lead_ws",
                                   "join_fields", "long_line"]))
        if not lines:
            lines.append([draw(nasty_token)])
            continue
        i = draw(st.integers(0, len(lines) - 1))
        if op == "set_field":
            j = draw(st.integers(0, max(len(lines[i]) - 1, 0)))
            if lines[i]:
                lines[i][j] = draw(nasty_token)
            else:
                lines[i].append(draw(nasty_token))
        elif op == "drop_field" and lines[i]:
            del lines[i][draw(st.integers(0, len(lines[i]) - 1))]
        elif op == "add_field":
            lines[i].insert(draw(st.integers(0, len(lines[i]))), draw(nasty_token))
        elif op == "dup_line":
            lines.insert(i, list(lines[i]))
        elif op == "swap":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
        elif op == "del_line":
            del lines[i]
        elif op == "empty_line":
            lines.insert(i, [])
        elif op == "no_newline":
            final_newline = False
        elif op == "lead_ws":
            lines[i] = [draw(st.sampled_from([" ", "\t", "\u3000", "\x0b"])) + (lines[i] or [""])[0]] \
                + lines[i][1:]
        elif op == "join_fields":
            lines[i] = [draw(st.sampled_from(["\t", "  ", "\xa0", "\u2028", "\x1c"])).join(lines[i])]
        elif op == "long_line":
            lines[i] = lines[i] + ["w"] * 20000
    insert = draw(st.one_of(st.none(), st.sampled_from(NASTY_BYTES))) if draw(st.booleans()) else None
    return lines, final_newline, insert, n + (insert is not None)


@st.composite
def mutated_file(draw, valid: st.SearchStrategy[list[list[str]]], sep: str = " "
                 ) -> tuple[bytes, int]:
    """(file bytes, mutation count) from ``valid``: a strategy of lines given as field lists."""
    lines, final_newline, insert, n = _mutate_lines(draw, [list(f) for f in draw(valid)])
    text = "\n".join(sep.join(f) for f in lines) + ("\n" if final_newline and lines else "")
    raw = text.encode("utf-8")
    if insert:
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + insert + raw[pos:]
    return raw, n


def file_bytes(valid: st.SearchStrategy[list[list[str]]], sep: str = " "
               ) -> st.SearchStrategy[tuple[bytes, int]]:
    """Mostly near-valid files, some pure garbage (bytes or nasty text): (bytes, mutations)."""
    garbage = st.one_of(st.binary(max_size=300), nasty_text.map(lambda t: t.encode("utf-8")))
    near = mutated_file(valid, sep)
    return st.one_of(near, near, near, garbage.map(lambda b: (b, 99)))


def check(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, W2vtkError | None]:
    """Call a parser: (result, None) or (None, the W2vtkError).  Any other exception escapes
    (the test fails, naming the input).  The message must be one line."""
    try:
        return fn(*args, **kwargs), None
    except W2vtkError as err:
        msg = str(err)
        assert msg and "\n" not in msg and "\r" not in msg, f"W2vtkError message is not one line: {msg!r}"
        return None, err


def write(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path
