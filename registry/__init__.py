"""Modelkeep registry: versioned models tied to the runs and artifacts that produced them."""

__version__ = "0.1.0"
