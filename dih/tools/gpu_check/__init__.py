from .prepare import *  # noqa: F403  (the next commits split steps.py and name what is re-exported)
from .steps import *  # noqa: F403
