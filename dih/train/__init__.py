"""Training: the one epoch loop every stage shares (``fit``), the step (eager or compiled), determinism
and seeding, and the per-epoch metrics a run records."""
