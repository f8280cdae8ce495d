"""The report: finished runs -> tables (Markdown, CSV), paired statistics with confidence intervals,
and plots; ``python -m dih.report``."""
