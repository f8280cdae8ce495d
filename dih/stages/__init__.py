"""One module per kind of stage, each with ``build(spec, upstream_artifacts, runtime, work_dir) ->
(payload, summary)`` and the ``VERSION`` of what it computes. The specs they build are in dih/stages/specs.py;
dih/plan/chain.py makes them from the config."""

from dih.stages import cohort, heads, hint, student, teacher

# kind of stage -> the module that builds it (TAKD's assistant is distilled like a student)
BUILDERS = {
    "teacher": teacher,
    "heads": heads,
    "hint": hint,
    "cohort": cohort,
    "assistant": student,
    "student": student,
}


def build(spec, upstream: dict, rt, work_dir) -> tuple[dict, dict]:
    return BUILDERS[spec.kind].build(spec, upstream, rt, work_dir)


def stage_version(kind: str) -> int:
    return BUILDERS[kind].VERSION
