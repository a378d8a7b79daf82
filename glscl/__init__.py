"""glscl: a teaching and ablation workbench for GLSCL text-video retrieval."""
__version__ = "0.1.0"
