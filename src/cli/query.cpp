// `seqit query`: runs a JSONL file of chat / completion / score requests through an LLM backend
// (OpenAI-compatible servers over HTTP), with a crash-safe response cache and a resumable output.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>

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
  std::vector<std::string> urls;
  std::string local_model, tokenizer, chat_template;
  std::string model;
  std::string api_key_env = "OPENAI_API_KEY";
  std::string cache;
  bool no_cache = false;
  bool fresh = false;
  std::string on_error = "stop";
  int concurrency = 16;
  int retries = 5;
  double timeout_s = 600, connect_timeout_s = 10;
  double rpm = 0, tpm = 0;
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
  if (o.urls.empty() == o.local_model.empty())
    throw Error(
        "give either --url (OpenAI-compatible servers) or --local MODEL (the in-process engine)");
  std::shared_ptr<llm::HttpBackend> http_backend;
  std::shared_ptr<llm::Backend> backend;
  if (!o.urls.empty()) {
    llm::HttpBackendOptions http;
    http.base_urls = o.urls;
    http.model = o.model;
    http.api_key_env = o.api_key_env;
    http.max_in_flight = o.concurrency;
    http.retry.max_retries = o.retries;
    http.request_timeout_s = o.timeout_s;
    http.connect_timeout_s = o.connect_timeout_s;
    http.requests_per_minute = o.rpm;
    http.tokens_per_minute = o.tpm;
    http_backend = std::make_shared<llm::HttpBackend>(http);
    backend = http_backend;
  } else {
    llm::LocalBackendOptions local;
    local.model_name = o.model;
    local.max_batch = o.concurrency;
    local.chat_template = o.chat_template;
    backend = llm::LocalBackend::open(o.local_model, o.tokenizer, local);
  }
  std::shared_ptr<llm::CachedBackend> cached;
  if (!o.no_cache) {
    const std::string cache_path = o.cache.empty() ? o.output + ".cache.sqlite" : o.cache;
    cached = std::make_shared<llm::CachedBackend>(backend, cache_path);
    backend = cached;
  }
  log::info("query: {} -> {} via {}", o.input, o.output, backend->describe());

  llm::RequestJobOptions job;
  job.defaults = o.params;
  if (o.seed >= 0) job.defaults.seed = static_cast<uint64_t>(o.seed);
  job.model = o.model;
  job.fresh = o.fresh;
  job.stop_on_error = o.on_error == "stop";
  job.max_outstanding = std::max(64, 4 * o.concurrency);
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
  if (http_backend) http_stats = http_backend->stats();
  std::string cache_text = "cache off";
  if (cached) {
    auto cs = cached->stats();
    cache_text = fmt::format("cache: {} hits, {} misses, {} deduplicated", cs.hits, cs.misses,
                             cs.deduplicated);
  }
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
  cmd.add_option(
         "--url", o->urls,
         "Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (repeat for load "
         "balancing and failover)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd.add_option("--local", o->local_model,
                 "Run a model in this process instead (HF folder, .gguf, llama2.c .bin)");
  cmd.add_option("--tokenizer", o->tokenizer,
                 "With --local: the tokenizer (default: the one found with the model)");
  cmd.add_option("--chat-template", o->chat_template,
                 "With --local: 'plain', a builtin format (tulu, alpaca, chatml, llama3, mistral) or a "
                 "template file; default: the model's own template, else plain");
  cmd.add_option("--model", o->model,
                 "Model name sent with requests that name none (with --local: its id)");
  cmd.add_option("--api-key-env", o->api_key_env, "Environment variable holding the API key")
      ->capture_default_str();
  cmd.add_option("--cache", o->cache, "SQLite response cache (default: <output>.cache.sqlite)");
  cmd.add_flag("--no-cache", o->no_cache, "Send every request, store nothing");
  cmd.add_flag("--fresh", o->fresh, "Start the output anew instead of resuming it");
  cmd.add_option("--on-error", o->on_error,
                 "stop: stop at the first failed request; skip: go on and report")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
  cmd.add_option("--concurrency", o->concurrency,
                 "Requests in flight at once (with --local: sequences per batch)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--retries", o->retries,
                 "Retries of a failed request (429, 5xx, network, timeout)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--timeout", o->timeout_s, "Seconds one attempt may take")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--connect-timeout", o->connect_timeout_s, "Seconds to connect")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--rpm", o->rpm, "Request limit per minute (0 = none)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--tpm", o->tpm, "Token limit per minute (0 = none)")
      ->check(CLI::NonNegativeNumber);
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
