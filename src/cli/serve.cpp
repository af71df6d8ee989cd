// `seqit serve`: an OpenAI-compatible HTTP server over the local engine (continuous batching).
// SIGTERM or SIGINT stops accepting connections, finishes the requests in flight, and exits 0.
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "cli/command.h"
#include "llm/local_backend.h"
#include "llm/server.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::cli {
namespace {

struct ServeOptions {
  std::string model, tokenizer, model_name, chat_template;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key, api_key_env;
  int64_t max_batch = 16, max_context = 0;
  int http_threads = 256;
  size_t max_body_bytes = llm::ServerOptions{}.max_body_bytes;
  bool bf16 = false;
  std::string kv_cache = "f32";
};

void run(const ServeOptions& o) {
  // Block the stop signals before any thread exists, so every thread inherits the mask and one
  // thread below receives them with sigwait (no async-signal-safety puzzles).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  llm::LocalBackendOptions local;
  local.model_name = o.model_name;
  local.max_batch = o.max_batch;
  local.max_context = o.max_context;
  local.chat_template = o.chat_template;
  local.kv_cache = o.kv_cache;
  auto backend = llm::LocalBackend::open(o.model, o.tokenizer, local, o.bf16);

  llm::ServerOptions server_options;
  server_options.host = o.host;
  server_options.port = o.port;
  server_options.threads = o.http_threads;
  server_options.max_body_bytes = o.max_body_bytes;
  server_options.api_key = o.api_key;
  if (server_options.api_key.empty() && !o.api_key_env.empty()) {
    const char* key = std::getenv(o.api_key_env.c_str());
    if (!key || !*key)
      throw Error(fmt::format("--api-key-env {}: the variable is not set", o.api_key_env));
    server_options.api_key = key;
  }
  llm::OpenAiServer server(*backend, server_options);
  server.start();
  // One line on stdout that scripts (and the tests) read to learn the port.
  std::printf("seqit serve: %s on http://%s:%d/v1 (%s)\n", backend->default_model().c_str(),
              o.host.c_str(), server.port(), backend->describe().c_str());
  std::fflush(stdout);
  if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1" &&
      server_options.api_key.empty())
    log::warn(
        "serve: listening on {} without an API key: anyone who can reach this address can use the "
        "model",
        o.host);

  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log::info("serve: {} received: finishing the requests in flight",
              sig == SIGTERM ? "SIGTERM" : "SIGINT");
    server.stop();
  });
  server.wait();
  // A stop that did not come from a signal (none today) would leave the stopper waiting: wake it.
  if (stopper.joinable()) {
    pthread_kill(stopper.native_handle(), SIGTERM);
    stopper.join();
  }
  auto st = server.stats();
  log::info(
      "serve: stopped after {} requests ({} answered, {} failed, {} abandoned by their client)",
      st.requests, st.succeeded, st.failed, st.cancelled);
}

void setup(CLI::App& cmd) {
  auto o = std::make_shared<ServeOptions>();
  cmd.add_option("--model", o->model, "Model: HF folder, .safetensors, .gguf or llama2.c .bin")
      ->required();
  cmd.add_option("--tokenizer", o->tokenizer,
                 "Tokenizer file or folder (default: the one found with the model)");
  cmd.add_option(
      "--chat-template", o->chat_template,
      "How chat messages become a prompt: 'plain' (contents joined by blank lines), a builtin "
      "format (tulu, alpaca, chatml, llama3, mistral) or a template file; default: the model's "
      "own template, else plain");
  cmd.add_option("--model-name", o->model_name,
                 "Model id clients use (default: the model file's stem)");
  cmd.add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd.add_option("--port", o->port, "Port (0 = any free port; the chosen one is printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd.add_option("--api-key", o->api_key,
                 "Require 'Authorization: Bearer KEY' (visible to other local users; "
                 "prefer --api-key-env)");
  cmd.add_option("--api-key-env", o->api_key_env,
                 "Environment variable holding the required API key");
  cmd.add_option("--max-batch", o->max_batch, "Sequences decoded together (continuous batching)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--max-context", o->max_context,
                 "Positions per sequence (0 = the model's context length)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--http-threads", o->http_threads, "Connections served at once")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--max-body-bytes", o->max_body_bytes,
                 "Largest request body accepted; a larger one gets 413 without being read")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_flag("--bf16", o->bf16, "Keep weight matrices in bf16 (half the memory)");
  cmd.add_option(
         "--kv-cache", o->kv_cache,
         "KV cache element type: f32, f16 or bf16 (half the cache memory and reads; llama.cpp's "
         "default is f16)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  cmd.footer(
      "Endpoints: GET /health, GET /metrics (Prometheus), GET /v1/models, POST "
      "/v1/chat/completions and /v1/completions "
      "(stream=true for "
      "server-sent events; echo+logprobs for scoring). Chat messages are joined by blank lines "
      "(the 'plain' format). "
      "See docs/llm.md for the supported fields. SIGTERM/Ctrl-C finish the requests in flight, "
      "then exit.");
  cmd.callback([o] { run(*o); });
}

}  // namespace
SEQIT_COMMAND("serve", "Serve a model over an OpenAI-compatible HTTP API", setup);
}  // namespace seqit::cli
