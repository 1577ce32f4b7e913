// rg_cpu_debug.cpp - what a handler's author sees of a kernel on the CPU backend: its printf
// output as it is written, and a failed assert() named in the kernel's failure.
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

// A runner's stdout is a pipe or a file, which stdio buffers fully: a handler's printf output
// would come out in chunks, and what was buffered when the handler crashed would be lost.
// Unbuffered, each printf reaches the host when the handler makes it.
__attribute__((constructor)) static void rg_unbuffered_stdout() {
    setvbuf(stdout, nullptr, _IONBF, 0);
}

// glibc's assert() calls __assert_fail, and the runner's own definition is the one it binds to:
// the assertion's text and place go to stderr, where the host collects them into the kernel's
// failure; abort() then adds the block and thread (rg_cpu_runtime.cpp's fault report).
extern "C" void __assert_fail(const char* expr, const char* file, unsigned int line,
                              const char* function) noexcept {
    fprintf(stderr, "ringgen: assert(%s) failed at %s:%u in %s\n", expr, file, line, function);
    abort();
}
