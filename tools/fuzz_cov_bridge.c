// Edge coverage of a gcc-built extension for atheris's libFuzzer (eval/fuzz.py --native).
//
// gcc's -fsanitize-coverage=trace-pc calls __sanitizer_cov_trace_pc() at every basic block;
// libFuzzer only stubs that callback (it reads clang's inline 8-bit counters instead). This
// bridge implements it as AFL does -- an 8-bit counter per hashed (previous block, block) edge --
// and hands the counters to libFuzzer as one more module of inline 8-bit counters once libFuzzer
// is loaded (nc_cov_bridge_attach, called from the fuzz target's first run).
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>

#define MAP_SIZE (1u << 16)

static uint8_t counters[MAP_SIZE];
static uintptr_t pc_table[2 * MAP_SIZE];  // (fake pc, flags) per counter: libFuzzer's PC table
static uintptr_t previous;

void __sanitizer_cov_trace_pc(void) {
  uintptr_t pc = (uintptr_t)__builtin_return_address(0);
  uintptr_t block = (pc ^ (pc >> 13) ^ (pc >> 27)) & (MAP_SIZE - 1);
  counters[block ^ previous]++;
  previous = block >> 1;
}

// Returns 0 on success; libfuzzer_path is the already loaded library that holds libFuzzer.
int nc_cov_bridge_attach(const char* libfuzzer_path) {
  void* lib = dlopen(libfuzzer_path, RTLD_NOW | RTLD_NOLOAD);
  if (!lib) return 1;
  void (*counters_init)(uint8_t*, uint8_t*) = (void (*)(uint8_t*, uint8_t*))dlsym(lib, "__sanitizer_cov_8bit_counters_init");
  void (*pcs_init)(const uintptr_t*, const uintptr_t*) =
      (void (*)(const uintptr_t*, const uintptr_t*))dlsym(lib, "__sanitizer_cov_pcs_init");
  if (!counters_init || !pcs_init) return 2;
  for (uintptr_t i = 0; i < MAP_SIZE; ++i) pc_table[2 * i] = (uintptr_t)&counters[i];
  counters_init(counters, counters + MAP_SIZE);
  pcs_init(pc_table, pc_table + 2 * MAP_SIZE);
  previous = 0;
  return 0;
}
