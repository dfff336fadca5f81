"""`panel serve app.py`: the technic-panel page.

Until the live dashboard lands, the page says what the engine offers and how
to run a scan from the command line; it does no scan work on the server loop.
"""

import panel as pn

from technic_panel.config import ScanConfig
from technic_panel.data.synthetic import SECTORS

INTRO = """
# technic-panel

A streaming stock scanner: TA-Lib indicators and scores for thousands of
symbols, results streamed as each symbol completes.

The live dashboard is on its way. Meanwhile, stream a scan as NDJSON:

```bash
.venv/bin/technic-scan --symbols 5000 --max-signals 10 --format table
```
"""


def settings_table() -> str:
    """Return the scan settings and their docs as a Markdown table."""
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    for name in ScanConfig.setting_names():
        parameter = ScanConfig.param[name]
        rows.append(f"| `{name}` | `{parameter.default!r}` | {parameter.doc} |")
    return "\n".join(rows)


def page() -> pn.template.BaseTemplate:
    """Build the page for one browser session."""
    sectors = ", ".join(SECTORS)
    return pn.template.FastListTemplate(
        title="technic-panel",
        main=[pn.pane.Markdown(INTRO), pn.pane.Markdown(f"**Synthetic sectors:** {sectors}"),
              pn.pane.Markdown("## Scan settings\n" + settings_table())],
    )


page().servable()
