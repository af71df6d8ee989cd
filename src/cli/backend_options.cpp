#include "cli/backend_options.h"

#include <fmt/format.h>

#include "llm/format_check.h"
#include "llm/http_backend.h"
#include "llm/local_backend.h"
#include "llm/response_cache.h"
#include "util/error.h"

namespace seqit::cli {

void add_backend_options(CLI::App& cmd, BackendOptions& o) {
  cmd.add_option(
         "--url", o.urls,
         "Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (repeat for load "
         "balancing and failover)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd.add_option("--local", o.local_model,
                 "Run a model in this process instead (HF folder, .gguf, llama2.c .bin)");
  cmd.add_option("--tokenizer", o.tokenizer,
                 "With --local: the tokenizer (default: the one found with the model)");
  cmd.add_option(
      "--chat-template", o.chat_template,
      "With --local: 'plain', a builtin format (tulu, alpaca, chatml, llama3, mistral) or a "
      "template file; default: the model's own template, else plain");
  cmd.add_option("--kv-cache", o.kv_cache, "With --local: the KV cache's element type")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  cmd.add_option("--model", o.model,
                 "Model name sent with requests that name none (with --local: its id)");
  cmd.add_option("--api-key-env", o.api_key_env, "Environment variable holding the API key")
      ->capture_default_str();
  cmd.add_option("--cache", o.cache, "SQLite response cache (default: beside the output)");
  cmd.add_flag("--no-cache", o.no_cache, "Send every request, store nothing");
  cmd.add_option("--concurrency", o.concurrency,
                 "Requests in flight at once (with --local: sequences per batch)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--retries", o.retries, "Retries of a failed request (429, 5xx, network, timeout)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--timeout", o.timeout_s, "Seconds one attempt may take")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--connect-timeout", o.connect_timeout_s, "Seconds to connect")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--rpm", o.rpm, "Request limit per minute (0 = none)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--tpm", o.tpm, "Token limit per minute (0 = none)")
      ->check(CLI::NonNegativeNumber);
}

OpenedBackend open_backend(const BackendOptions& o, const std::string& default_cache) {
  if (o.urls.empty() == o.local_model.empty())
    throw Error(
        "give either --url (OpenAI-compatible servers) or --local MODEL (the in-process engine)");
  OpenedBackend out;
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
    out.http = std::make_shared<llm::HttpBackend>(http);
    // A response_format the server refuses or ignores is checked (and asked again) here.
    out.backend = std::make_shared<llm::FormatCheckedBackend>(out.http);
  } else {
    llm::LocalBackendOptions local;
    local.model_name = o.model;
    local.max_batch = o.concurrency;
    local.chat_template = o.chat_template;
    local.kv_cache = o.kv_cache;
    out.backend = llm::LocalBackend::open(o.local_model, o.tokenizer, local);
  }
  if (!o.no_cache) {
    out.cached = std::make_shared<llm::CachedBackend>(out.backend,
                                                      o.cache.empty() ? default_cache : o.cache);
    out.backend = out.cached;
  }
  return out;
}

std::string OpenedBackend::cache_summary() const {
  if (!cached) return "cache off";
  const auto s = cached->stats();
  return fmt::format("cache: {} hits, {} misses, {} deduplicated", s.hits, s.misses,
                     s.deduplicated);
}

}  // namespace seqit::cli
