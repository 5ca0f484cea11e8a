"""asyncio TCP listeners, the per-connection loop, dispatch and the broker's lifecycle."""
