// `seqit version`: what was built and how.
#include <cstdio>

#include "cli/command.h"
#include "dist/communicator.h"

namespace seqit::cli {
namespace {
void setup(CLI::App& cmd) {
  cmd.callback([] {
    std::printf("seqit %s\n", SEQIT_VERSION);
    std::printf("compiler: g++ %d.%d.%d, C++%ld\n", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__,
                __cplusplus / 100 % 100);
#if defined(__AVX512F__)
    std::printf("cpu features compiled in: AVX-512\n");
#elif defined(__AVX2__)
    std::printf("cpu features compiled in: AVX2\n");
#else
    std::printf("cpu features compiled in: baseline x86-64\n");
#endif
    std::printf("mpi: %s\n", dist::built_with_mpi()
                                 ? "yes (mpirun -np N seqit train|generate: docs/training.md)"
                                 : "no (built without libopenmpi-dev: one process only)");
  });
}
}  // namespace
SEQIT_COMMAND("version", "Print the version and build configuration", setup);
}  // namespace seqit::cli
