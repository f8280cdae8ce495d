"""One module per kind of stage. Each has ``identity(ctx, upstream_keys) -> dict`` (exactly the settings
that determine its output: the content key is its hash) and ``build(ctx, upstream_artifacts, work_dir)
-> (payload, summary)``; ``UPSTREAM`` names the stages it needs before it."""

from dih.stages import assistant, heads, hint, student, teacher

STAGES = {"teacher": teacher, "heads": heads, "assistant": assistant, "hint": hint, "student": student}

# Stages that train the student; everything before them in a method's list is the teacher side.
STUDENT_STAGES = ("student",)
