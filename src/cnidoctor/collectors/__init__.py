"""Collectors: what to run on a node for each fact, and the pure parsers of the output."""
