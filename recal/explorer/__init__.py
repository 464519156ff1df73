"""The report page: one self-contained HTML file per measured run (or per comparison of two),
to explore the run question by question (:mod:`recal.explorer.data` builds what it shows,
:mod:`recal.explorer.page` writes it; ``explorer.js`` and ``explorer.css`` are inlined)."""

from recal.explorer.data import comparison_document, explorer_document, partition_changes
from recal.explorer.page import render_page, write_page

__all__ = ["comparison_document", "explorer_document", "partition_changes", "render_page",
           "write_page"]
