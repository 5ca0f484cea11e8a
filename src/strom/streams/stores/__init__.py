"""State stores: key-value (and, next, window and session) stores, in memory or on disk, each
backed by a compacted changelog topic from which it is restored."""
