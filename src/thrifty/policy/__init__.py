"""Sans-I/O routing policies: they yield ``Call(tier)`` and decide; they never do I/O themselves."""
