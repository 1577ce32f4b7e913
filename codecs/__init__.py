"""ringgen.codecs: one module per wire format -- converters (Python values <-> wire values),
msgpack (a message as a map of field name -> value) and structs (a message as its C struct)."""
