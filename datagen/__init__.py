"""datagen: instruction-tuning data factory."""
__version__ = "0.1.0"
