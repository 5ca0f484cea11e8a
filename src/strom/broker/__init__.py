"""Request handlers, one module per API family, and the registry that maps keys to them."""
