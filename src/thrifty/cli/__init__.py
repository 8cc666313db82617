"""The ``thrifty`` command line. One module per command group; see ``main.COMMANDS``."""
