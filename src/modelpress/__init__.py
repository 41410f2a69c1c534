"""modelpress: compress PyTorch models for small devices, measured honestly."""
__version__ = "0.1.0"
