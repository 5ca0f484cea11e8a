"""A protocol fuzzer for strom: `python -m bench.fuzz` (see bench/fuzz/README.md)."""
