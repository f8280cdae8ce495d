"""The names of a run's stages, in one place: the schema checks them, the plan orders and cuts the chain
at them, and a Slurm sweep's teacher-side jobs are runs cut at them."""

# What method.stages may list, in the order a chain builds them.
METHOD_STAGES = ("teacher", "heads", "hint", "assistant", "student")
# stage.until values that stop a run after a prefix of its method's stages...
PREFIXES = ("teacher", "heads", "student")
# ...and those that stop it right after one planned stage (what a sweep's teacher-side jobs build; an
# assistant's cohort cache is built by the assistant's cut, before it).
CUTS = ("hint", "assistant", "cohort")
# Every stage.until, in the order a chain reaches them.
UNTIL = ("teacher", "heads", "hint", "assistant", "cohort", "student")
assert set(UNTIL) == {*PREFIXES, *CUTS}
