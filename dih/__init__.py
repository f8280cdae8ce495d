"""dih: Distilling Knowledge via Intermediate Classifier Heads, and the baselines it is compared with."""

__version__ = "0.1.0"
