// seqit: the command-line entry point. Parses global options, dispatches to the registered
// subcommand, and prints any error exactly once.
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/command.h"
#include "dist/communicator.h"
#include "tensor/threading.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::cli {
namespace {
GlobalOptions g_options;
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace

const GlobalOptions& globals() {
  return g_options;
}

int thread_count() {
  if (g_options.threads > 0) return g_options.threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

bool register_command(const Command& command) {
  registry().push_back(command);
  return true;
}

const std::vector<Command>& registered_commands() {
  return registry();
}

// Under mpirun without --threads: the CPUs this rank may use. mpirun binds each rank to its own
// core(s) by default (the affinity mask says how many); where it does not (--bind-to none), the
// ranks of one machine share its CPUs evenly instead of each starting a thread per CPU.
int rank_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  const int allowed = CPU_COUNT(&set);
  const int online = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int ranks_here = local ? std::max(1, std::atoi(local)) : 1;
  if (allowed < online || ranks_here <= 1) return 0;  // bound by the launcher, or alone
  return std::max(1, allowed / ranks_here);
}

}  // namespace seqit::cli

int main(int argc, char** argv) {
  using namespace seqit;
  tensor::establish_openmp_wait_policy(
      argv);  // may re-execute this process once; see docs/engine.md
  try {
    dist::init_world(&argc, &argv);  // MPI when mpirun/srun started this process
  } catch (const Error& e) {
    std::fprintf(stderr, "seqit: error: %s\n", e.what());
    return 1;
  }
  dist::Communicator& world = dist::world();
  CLI::App app{
      "seqit: sequential instruction tuning of LLMs — data, tokenizers, training, evaluation",
      "seqit"};
  app.set_version_flag("--version", std::string("seqit ") + SEQIT_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  auto& g = cli::g_options;
  if (const char* env = std::getenv("SEQIT_LOG_LEVEL")) g.log_level = env;
  app.add_option("--threads,-t", g.threads, "Worker threads for compute (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-level", g.log_level,
                 "debug, info, warn, error or off (env SEQIT_LOG_LEVEL)");
  app.add_flag("--quiet,-q", g.quiet, "No progress bars; only warnings and errors");

  auto commands = cli::registered_commands();
  std::sort(commands.begin(), commands.end(), [](const cli::Command& a, const cli::Command& b) {
    return std::string(a.name) < b.name;
  });
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.summary);
    c.setup(*sub);
  }
  app.parse_complete_callback([&] {
    // Several ranks: rank 0 speaks for the job (every rank reads the same data and would repeat
    // its warnings); the others print errors only, prefixed with their rank.
    log::Level level = log::parse_level(g.log_level);
    if (g.quiet) level = std::max(level, log::Level::warn);
    if (world.rank() != 0) level = std::max(level, log::Level::error);
    log::set_level(level);
    Progress::set_enabled(!g.quiet && world.rank() == 0);
    if (world.size() > 1) {
      log::set_prefix(fmt::format("rank {}: ", world.rank()));
      if (g.threads == 0) g.threads = cli::rank_threads();
      // Commands that split their work between processes; any other would run whole on every rank
      // (each writing the same outputs).
      for (const CLI::App* sub : app.get_subcommands()) {
        std::string name = sub->get_name();
        for (const CLI::App* leaf : sub->get_subcommands()) name += " " + leaf->get_name();
        const bool sharded = name == "train" || name == "generate" || name.starts_with("eval ") ||
                             name == "seqinstruct run" || name == "version";
        if (!sharded)
          throw Error(fmt::format(
              "seqit {} does not split its work between processes: run it without mpirun (under "
              "mpirun: train, generate, eval and seqinstruct run)",
              name));
      }
    }
  });

  // An error on one rank of several ends the whole job: the other ranks would otherwise wait in
  // their next collective for ever. mpirun then names the rank that aborted.
  auto fail = [&](const char* kind, const char* what, int code) {
    if (world.size() > 1) {
      std::fprintf(stderr, "seqit: rank %d of %d: %s: %s\n", world.rank(), world.size(), kind,
                   what);
      std::fflush(stderr);
      world.abort(code);
    }
    std::fprintf(stderr, "seqit: %s: %s\n", kind, what);
    return code;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Error& e) {
    return fail("error", e.what(), 1);
  } catch (const std::exception& e) {
    return fail("internal error", e.what(), 2);
  }
  dist::finalize_world();
  return 0;
}
