"""The version of ringgen, in a module of its own: codegen stamps it into what it writes
without importing the public face (and with it the runtime)."""

__version__ = "0.1.0"
