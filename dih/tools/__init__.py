"""Commands on a finished run or on this machine: export a model and load it back, the cohort's
target softness, the bf16 precision check, and the benchmark. Their command names are dih.export,
dih.cohort_stats, dih.precision_check and dih.bench (thin modules at the top of the package)."""
