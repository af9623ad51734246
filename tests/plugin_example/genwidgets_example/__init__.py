"""A minimal genwidgets provider plugin (see docs/adapters.md): `adapter` and `sandbox`."""
