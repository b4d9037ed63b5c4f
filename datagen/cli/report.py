"""`datagen report` (being written)."""
from __future__ import annotations
