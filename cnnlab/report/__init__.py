"""The report: one self-contained, interactive HTML file per run, built only from what the run
directory holds (read through cnnlab.run); it imports no training code."""

from cnnlab.report.build import write_report

__all__ = ["write_report"]
