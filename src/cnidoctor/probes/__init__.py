"""Active probes: traffic that shows what the node facts only suggest."""
