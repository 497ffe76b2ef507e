"""Facts: typed models of what was collected from a node. No I/O happens here."""
