"""Configuration: ``thrifty.toml`` (file → env → CLI) parsed and checked once at the edge into typed
settings objects (:mod:`thrifty.config.settings`) that the live path and the lab are handed."""
