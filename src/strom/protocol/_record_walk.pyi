"""The C record walk; see strom.protocol.record_walk.walk_records_py for the contract."""

def walk_records(
    buf: bytes | bytearray | memoryview, pos: int, count: int, /
) -> tuple[int, int, int]: ...
def walk_chunk(
    buf: bytes | bytearray | memoryview, pos: int, index: int, count: int, final: bool, /
) -> tuple[int, int, int, int, int]: ...
def walk_headers(
    buf: bytes | bytearray | memoryview, pos: int, count: int, /
) -> tuple[int, int]: ...
def record_heads(
    buf: bytes | bytearray | memoryview, pos: int, count: int, value: bool, n: int, /
) -> set[bytes | None]: ...
