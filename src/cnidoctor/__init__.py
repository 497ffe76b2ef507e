"""cnidoctor: names the node networking failure behind a broken pod network."""

__version__ = "0.1.0"
