// Options shared by the commands that talk to an LLM through llm::Backend (query, seqinstruct,
// eval): OpenAI-compatible servers (--url, repeatable) or the in-process engine (--local), and the
// SQLite response cache in front of either.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "llm/backend.h"

namespace seqit::llm {
class HttpBackend;
class CachedBackend;
}  // namespace seqit::llm

namespace seqit::cli {

struct BackendOptions {
  std::vector<std::string> urls;
  std::string local_model, tokenizer, chat_template, kv_cache = "f32";
  std::string model;
  std::string api_key_env = "OPENAI_API_KEY";
  std::string cache;
  bool no_cache = false;
  int concurrency = 16;
  int retries = 5;
  double timeout_s = 600, connect_timeout_s = 10;
  double rpm = 0, tpm = 0;
};
void add_backend_options(CLI::App& cmd, BackendOptions& o);

struct OpenedBackend {
  std::shared_ptr<llm::Backend> backend;       // what to send requests to (the cache, when on)
  std::shared_ptr<llm::HttpBackend> http;      // set for --url
  std::shared_ptr<llm::CachedBackend> cached;  // set unless --no-cache
  // "cache: 3 hits, 5 misses, 0 deduplicated", or "cache off".
  std::string cache_summary() const;
};
// Opens what the options name; the cache goes to --cache, else `default_cache`.
OpenedBackend open_backend(const BackendOptions& o, const std::string& default_cache);

}  // namespace seqit::cli
