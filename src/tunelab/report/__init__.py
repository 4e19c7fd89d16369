"""Pages for people: one self-contained HTML page per run folder.

    python -m tunelab.report runs/evaluate [--title "..."]     # report.html: scores, plots, examples
    tunelab view runs/generate                                # view.html: records, rejects, prompts sent

`write_report(eval_dir)` is what the evaluate stage calls once its outputs are written;
`write_view(folder)` what the generate and inference stages call; `write_page(folder)` picks by kind.
"""

from .html import REPORT_NAME, read_eval_folder, render_report, write_report
from .view import VIEW_NAME, folder_kind, render_view, write_page, write_view

__all__ = ["REPORT_NAME", "VIEW_NAME", "folder_kind", "read_eval_folder", "render_report", "render_view",
           "write_page", "write_report", "write_view"]
