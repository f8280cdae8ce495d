from .machinery import *  # noqa: F403  (the next commit names what is re-exported)
from .prepare import *  # noqa: F403
from .steps import *  # noqa: F403
