"""State machines without I/O: group coordination, offsets, (later) transactions."""
