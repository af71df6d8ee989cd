// Subcommand registry: each src/cli/<command>.cpp registers a setup function that adds its
// subcommand, options and callback to the `seqit` app. Commands parse options and call libraries;
// the logic lives in the libraries, where tests reach it.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace seqit::cli {

struct GlobalOptions {
  int threads = 0;  // 0 = all cores
  std::string log_level = "info";
  bool quiet = false;  // no progress bars, warnings and errors only
};
// The global options as parsed (valid inside command callbacks).
const GlobalOptions& globals();
// --threads resolved: the number given, or the number of cores.
int thread_count();

struct Command {
  const char* name;
  const char* summary;
  void (*setup)(CLI::App& command);  // add options and set the callback
};
// Registers a command; used through a namespace-scope `const bool` initialiser.
bool register_command(const Command& command);
const std::vector<Command>& registered_commands();

}  // namespace seqit::cli

#define SEQIT_CONCAT_INNER(a, b) a##b
#define SEQIT_CONCAT(a, b) SEQIT_CONCAT_INNER(a, b)
// SEQIT_COMMAND("name", "one-line summary", setup_function);
#define SEQIT_COMMAND(name, summary, setup)                                   \
  [[maybe_unused]] static const bool SEQIT_CONCAT(seqit_command_, __LINE__) = \
      ::seqit::cli::register_command({name, summary, setup})
