"""ringgen.schema: what a user declares -- the type model, the message header, `@message`,
`@ring_kernel` and the loading of actor modules. Depends on nothing else of ringgen's but
its errors and the codecs a message serializes itself with."""
