"""One module per API family; importing this package registers them all."""

from strom.broker.handlers import (  # noqa: F401
    api_versions,
    fetch,
    metadata,
    produce,
)
