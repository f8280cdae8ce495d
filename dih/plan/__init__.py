"""The plan: config -> the typed, keyed stage specs of a run (``chain``), and of a whole sweep with its
rough cost (``listing``, the ``python -m dih.plan`` command). The one place that reads a run's config."""
