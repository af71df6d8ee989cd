// seqit: the command-line entry point. Parses global options, dispatches to the registered
// subcommand, and prints any error exactly once.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/command.h"
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

}  // namespace seqit::cli

int main(int argc, char** argv) {
  using namespace seqit;
  tensor::establish_openmp_wait_policy(
      argv);  // may re-execute this process once; see docs/engine.md
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
    log::set_level(g.quiet && log::parse_level(g.log_level) < log::Level::warn
                       ? log::Level::warn
                       : log::parse_level(g.log_level));
    Progress::set_enabled(!g.quiet);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Error& e) {
    std::fprintf(stderr, "seqit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seqit: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
