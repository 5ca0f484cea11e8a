"""The in-memory engine (`memory:`): for tests and notebooks; nothing survives a restart."""

from strom.storage.memory.engine import MemoryEngine

__all__ = ["MemoryEngine"]
