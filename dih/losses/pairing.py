"""Which student stage is matched with which teacher stage by the feature losses (AT, FitNets, TOFD, MHKD)."""


def pair_stages(student_stages: tuple[str, ...], teacher_stages: tuple[str, ...]) -> list[tuple[str, str]]:
    """Pairs ``(student stage, teacher stage)``, shallow to deep; with unequal counts the deepest stages pair
    up (a 3-stage res8 under a 4-stage res34 meets the teacher's stages 2-4), as SPEC s.5 says for AT."""
    n = min(len(student_stages), len(teacher_stages))
    return list(zip(student_stages[len(student_stages) - n :], teacher_stages[len(teacher_stages) - n :]))
