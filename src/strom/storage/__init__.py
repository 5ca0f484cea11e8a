"""Log engines behind one interface: local (segmented files), and later postgres."""
