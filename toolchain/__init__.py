"""ringgen.toolchain: compiler calls and the compile cache they go through."""
