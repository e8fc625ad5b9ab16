"""Checks of a `w2vtk report` page shared by the report tests."""

from __future__ import annotations

import re
from pathlib import Path


def check_report(index: Path) -> list[Path]:
    """Every <img> of ``index`` is a relative path to a readable PNG of a sensible size; returns them."""
    import matplotlib.image as mpimg

    page = index.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs, "no plots"
    out = []
    for src in srcs:
        assert not src.startswith(("/", "data:", "http")), src
        png = index.parent / src
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
        h, w = mpimg.imread(png).shape[:2]
        assert 200 <= w <= 3000 and 150 <= h <= 2000, (src, w, h)
        out.append(png)
    return out
