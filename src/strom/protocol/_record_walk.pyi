"""The C record walk; see strom.protocol.record_walk.walk_records_py for the contract."""

def walk_records(
    buf: bytes | bytearray | memoryview, pos: int, count: int, /
) -> tuple[int, int, int]: ...
