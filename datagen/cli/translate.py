"""`datagen translate` (being written)."""
from __future__ import annotations
