"""dih: Distilling Knowledge via Intermediate Classifier Heads, and the baselines it is compared with."""

__version__ = "0.1.0"


def load_model(path, device: str = "cpu"):
    """The trained model of an artifact or run directory, in eval mode (dih/tools/loading.py); torch is
    imported only when it is called, so ``import dih`` stays light."""
    from dih.tools.loading import load_model as load

    return load(path, device)


__all__ = ["load_model"]
