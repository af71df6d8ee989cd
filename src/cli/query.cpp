// `seqit query`: runs a JSONL file of chat / completion / score requests through an LLM backend
// (OpenAI-compatible servers over HTTP), with a crash-safe response cache and a resumable output.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/backend_options.h"
#include "cli/command.h"
#include "llm/http_backend.h"
#include "llm/local_backend.h"
#include "llm/request_job.h"
#include "llm/response_cache.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::cli {
namespace {

struct QueryOptions {
  std::string input, output;
  BackendOptions backend;
  bool fresh = false;
  std::string on_error = "stop";
  llm::SamplingParams params;
  int64_t seed = -1;
};

int64_t count_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) ++n;
  return n;
}

void run(const QueryOptions& o) {
  const OpenedBackend opened = open_backend(o.backend, o.output + ".cache.sqlite");
  llm::Backend* backend = opened.backend.get();
  log::info("query: {} -> {} via {}", o.input, o.output, backend->describe());

  llm::RequestJobOptions job;
  job.defaults = o.params;
  if (o.seed >= 0) job.defaults.seed = static_cast<uint64_t>(o.seed);
  job.model = o.backend.model;
  job.fresh = o.fresh;
  job.stop_on_error = o.on_error == "stop";
  job.max_outstanding = std::max(64, 4 * o.backend.concurrency);
  Progress progress("query", count_lines(o.input), "req");
  job.on_progress = [&] { progress.add(1); };
  llm::RequestJobSummary s;
  try {
    s = llm::run_request_job(*backend, o.input, o.output, job);
  } catch (...) {
    progress.finish();
    throw;
  }
  progress.set(s.already_done + s.answered + s.failed + s.invalid);
  progress.finish();
  llm::HttpStats http_stats;
  if (opened.http) http_stats = opened.http->stats();
  const std::string cache_text = opened.cache_summary();
  std::fprintf(stderr,
               "query: %lld requests: %lld already in the output, %lld answered (%lld from cache), "
               "%lld failed, "
               "%lld invalid; %lld HTTP attempts (%lld retries); %s; tokens: %lld prompt + %lld "
               "completion\n",
               (long long)s.records, (long long)s.already_done, (long long)s.answered,
               (long long)s.cached, (long long)s.failed, (long long)s.invalid,
               (long long)http_stats.attempts, (long long)http_stats.retries, cache_text.c_str(),
               (long long)s.usage.prompt_tokens, (long long)s.usage.completion_tokens);
  if (s.failed + s.invalid > 0)
    throw Error(
        fmt::format(
            "{} of {} requests were not answered (see the warnings above); rerun the same command "
            "to retry them, answered ones are kept",
            s.failed + s.invalid, s.records))
        .in_file(o.input);
}

void setup(CLI::App& cmd) {
  auto o = std::make_shared<QueryOptions>();
  cmd.add_option("input", o->input,
                 "JSONL of requests: {\"id\", \"messages\"} (chat), {\"id\", \"prompt\"} "
                 "(completion) or {\"id\", \"prompt\", \"continuations\"} (score)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("-o,--output", o->output, "JSONL of answers; resumed when it exists")->required();
  add_backend_options(cmd, o->backend);
  cmd.add_flag("--fresh", o->fresh, "Start the output anew instead of resuming it");
  cmd.add_option("--on-error", o->on_error,
                 "stop: stop at the first failed request; skip: go on and report")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
  cmd.add_option("--temperature", o->params.temperature,
                 "Default sampling temperature (0 = greedy)")
      ->capture_default_str();
  cmd.add_option("--top-p", o->params.top_p, "Default nucleus sampling mass")
      ->capture_default_str();
  cmd.add_option("--top-k", o->params.top_k, "Default top-k (0 = off)")->capture_default_str();
  cmd.add_option("--max-tokens", o->params.max_tokens, "Default new tokens per answer")
      ->capture_default_str();
  cmd.add_option("--stop", o->params.stop, "Default stop string (repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd.add_option("--seed", o->seed, "Default sampling seed");
  cmd.add_option("--n", o->params.n, "Default answers per request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.footer(
      "Answers are written as they arrive; a killed run loses nothing: the rerun skips ids already "
      "in the output, "
      "and the response cache answers any request that had completed. The API key is never written "
      "anywhere.");
  cmd.callback([o] { run(*o); });
}

}  // namespace
SEQIT_COMMAND("query",
              "Send a JSONL file of chat/completion/score requests to OpenAI-compatible servers",
              setup);
}  // namespace seqit::cli
