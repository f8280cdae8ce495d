"""``python -m dih.tools.gpu_check``: the project's own GPU check, in one call, with a Markdown report.

    python -m dih.tools.gpu_check prepare                 # here, online: fills .gpu/ (ignored by git)
    python -m dih.tools.gpu_check run --out <dir>         # on the GPU machine: <dir>/gpu_check.md
    python -m dih.tools.gpu_check run --tiny --data <image folder> --out <dir>    # the same on a CPU, tiny

``prepare`` puts into ``.gpu/`` what a bare GPU machine (torch, torchvision, numpy; no internet) lacks: the
pure-Python dependencies (hydra-core, omegaconf, antlr4, submitit, the launcher plugin, PyYAML) and the
CIFAR-10 JPEG archive. ``run`` then, from the checkout's root, on real CIFAR-10 as an image folder:

1. the DIH chain (teacher, heads, student) eager, with each stage's images/s;
2. a student captured (``--capture``, today ``trainer.compile=true``) against the same student eager;
3. a student killed with SIGKILL after its first epoch and resumed, against one that never stopped, weights
   compared bit for bit (captured on a GPU, eager in the tiny CPU mode);
4. ``python -m dih.precision_check`` on the chain's run;
5. ``python -m dih.bench``;
6. packing: N CE students as N ``run.py`` processes at once against one alone.

Every step runs in its own process under a deadline guard (``--deadline`` seconds for the whole check): a
step that cannot get its minimum time is skipped and the report says so; the report is rewritten after each
step, so a check cut short still leaves one. ``nvidia-smi dmon`` samples SM use where present.

The package, one module per concern: prepare.py fills ``.gpu/`` (and holds the paths the check reads);
machinery.py is the check's machinery (its modes, the steps' shared state and deadline guard, the report's
tables, payload comparison); steps.py is the steps, ``check()`` and ``main()``; __main__.py runs ``main()``.
The names below are re-exported so that ``from dih.tools import gpu_check`` gives them as the single module
did (``prepare``, the function, is ``gpu_check.prepare.prepare``: the name is the module's).
"""

from .machinery import (
    GPU,
    TINY,
    Check,
    Mode,
    compare,
    env,
    payload_tensors,
    stage_lines,
    student_payload,
    table,
    tail,
)
from .prepare import ARCHIVE, DATA_ARCHIVE, GPU_DIR, ROOT, SITE, WHEELS
from .steps import (
    bench,
    captured,
    chain,
    check,
    dmon_section,
    dmon_start,
    environment,
    kill_after_first_epoch,
    main,
    pack,
    precision,
    resume,
    unpack,
)

__all__ = [
    "ARCHIVE", "DATA_ARCHIVE", "GPU", "GPU_DIR", "ROOT", "SITE", "TINY", "WHEELS", "Check", "Mode", "bench",
    "captured", "chain", "check", "compare", "dmon_section", "dmon_start", "env", "environment",
    "kill_after_first_epoch", "main", "pack", "payload_tensors", "precision", "resume", "stage_lines",
    "student_payload", "table", "tail", "unpack",
]  # fmt: skip
