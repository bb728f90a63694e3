"""pytest-html extras: the figures and the summary table of a test's audits, on that test's row.

Used only when pytest-html is installed (``config.pluginmanager.getplugin("html")``) and writes a
report (``--html``); under xdist the workers attach and the controller's report shows it;
the figures are embedded as base64 PNG so ``--self-contained-html`` holds them too. Nothing here
is imported, and pytest-html is never needed, in a run without ``--html``.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from typing import Any

from pytest_psa._records import AuditRecord


def extras_for(records: Sequence[AuditRecord]) -> list[dict[str, Any]]:
    """pytest-html extras for one test: a table of its audits and one PNG per figure."""
    try:
        from pytest_html import extras
    except ImportError:  # the html plugin object exists only with pytest-html installed
        return []
    from pytest_psa.report.terminal import summary_sections

    text = []
    for title, lines in summary_sections(records):
        text += [title, *lines]
    out = [extras.html(f'<pre class="psa-summary">{_html.escape(chr(10).join(text))}</pre>')]
    grid = sample_grid_html(records)
    if grid:
        out.append(extras.html(grid))
    from pytest_psa.report.plots import figures, png_base64

    try:
        made = figures(records)
    except Exception as exc:  # a figure must never break the test report: say so in it instead
        return [*out, extras.text(f"psa: figures could not be drawn: {type(exc).__name__}: {exc}", name="psa figures")]
    for name, fig in made.items():
        out.append(extras.png(png_base64(fig), name=f"psa {name}"))
    return out


def sample_grid_html(records: Sequence[AuditRecord]) -> str:
    """A grid of sample pairs per density audit that kept them: one column per distance quantile
    (x above A(x), the distance under them), so a reader sees what "proximal" means for this
    augmentation. Empty when no record kept pairs."""
    from pytest_psa.report.plots import display_name

    blocks = []
    for rec in records:
        if rec.kind != "density":
            continue
        s = rec.density()
        pairs = s.get("sample_pairs") or []
        if not pairs:
            continue
        cells = []
        for p in pairs:
            img = ('<img src="data:image/png;base64,{}" alt="{}" width="96" height="96" '
                   'style="image-rendering: pixelated; display: block">')
            cells.append(f'<td style="padding: 4px; text-align: center">'
                         f'{img.format(p["x"], "x")}{img.format(p["ax"], "A(x)")}'
                         f'<small>q={100 * p["quantile"]:.0f}% · d={p["distance"]:.4g}<br>image {p["image"]}, '
                         f'draw {p["draw"]}</small></td>')
        caption = (f"{_html.escape(display_name(rec.subject))}: x (top) and A(x) (bottom) at quantiles of "
                   f"d(x, A(x)), distance {_html.escape(str(s.get('distance', '?')))}, "
                   f"{_html.escape(rec.data_description())}, seed {_html.escape(str(s.get('seed', '?')))}")
        blocks.append(f'<table class="psa-samples"><caption style="text-align: left">{caption}</caption>'
                      f'<tr>{"".join(cells)}</tr></table>')
    return "".join(blocks)


def attach(report: Any, records: Sequence[AuditRecord]) -> None:
    """Append the extras for `records` to a test report (pytest-html reads ``report.extras``)."""
    if records:
        report.extras = [*getattr(report, "extras", []), *extras_for(records)]
