"""ringgen.runtime: messages and their serialization, and the machinery that runs actors."""
