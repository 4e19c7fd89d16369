"""Reports for people: one self-contained HTML page per evaluation folder.

    python -m tunelab.report runs/evaluate [--title "..."]

`write_report(eval_dir)` is what the evaluate stage calls once its outputs are written.
"""

from .html import REPORT_NAME, read_eval_folder, render_report, write_report

__all__ = ["REPORT_NAME", "read_eval_folder", "render_report", "write_report"]
