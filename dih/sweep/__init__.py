"""Sweeps: running a sweep file's grids here, or submitting them to Slurm in dependency order (the
schedule); ``python -m dih.sweep``."""
