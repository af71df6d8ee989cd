// LLM client and server speed.
//  1. Client overhead per request: seqit's HttpBackend, one request at a time against a seqit
//  server
//     that answers at once, minus a bare libcurl loop (one reused easy handle) against the same
//     server, measured in the same run. Target: < 1 ms.
//  2. Concurrency: 64 requests in flight against a server that answers each after a fixed delay;
//     throughput as a fraction of the ideal 64 / delay. Target: >= 0.9.
//  3. The local server's batched throughput on the 155.7M Llama config (hidden 1024, 8 layers, 16
//     heads, 4 kv heads, ffn 2816, vocab 32000, random weights; the llama2 tokenizer): 16
//     concurrent requests through `seqit serve`'s server vs the same requests one at a time.
//     Target: >= 5x.
//
//   bench_llm [--threads N] [--quick] [--tokens N (new tokens per request in part 3; default 32)]
#include <curl/curl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_models.h"
#include "delay_backend.h"
#include "llm/http_backend.h"
#include "llm/local_backend.h"
#include "llm/openai_json.h"
#include "llm/server.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/threading.h"
#include "tokenizer/tokenizer.h"

namespace {
using namespace seqit;
using bench::DelayBackend;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU seconds (user + system) this process has used, all threads.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

size_t discard(char*, size_t size, size_t n, void*) {
  return size * n;
}

// The reference: a bare libcurl loop posting the same body over one kept-alive connection.
double bare_curl_seconds_per_request(const std::string& url, const std::string& body,
                                     int requests) {
  CURL* easy = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
  for (int i = 0; i < 20; ++i) curl_easy_perform(easy);  // warm-up
  auto t0 = Clock::now();
  for (int i = 0; i < requests; ++i) curl_easy_perform(easy);
  double s = seconds_since(t0) / requests;
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);
  return s;
}

llm::HttpBackendOptions client_options(int port, int in_flight,
                                       const std::string& model = "delay") {
  llm::HttpBackendOptions o;
  o.base_urls = {"http://127.0.0.1:" + std::to_string(port) + "/v1"};
  o.model = model;
  o.api_key_env = "";
  o.max_in_flight = in_flight;
  o.retry.max_retries = 0;
  return o;
}

void client_overhead(int requests) {
  DelayBackend instant(0);
  llm::ServerOptions so;
  so.port = 0;
  so.model_names = {"delay"};
  llm::OpenAiServer server(instant, so);
  server.start();
  llm::Request request;
  request.kind = llm::RequestKind::chat;
  request.messages = {{"user", "Say ok."}};
  request.params.temperature = 0;
  request.params.max_tokens = 4;
  const std::string body = llm::to_openai_request(request, "delay").dump();
  const double bare = bare_curl_seconds_per_request(
      "http://127.0.0.1:" + std::to_string(server.port()) + "/v1/chat/completions", body, requests);
  llm::HttpBackend client(client_options(server.port(), 1));
  for (int i = 0; i < 20; ++i) (void)client.submit_async(request).get();
  auto t0 = Clock::now();
  for (int i = 0; i < requests; ++i) {
    auto r = client.submit_async(request).get();
    if (!r.ok()) std::fprintf(stderr, "request failed: %s\n", r.error().describe().c_str());
  }
  const double seqit = seconds_since(t0) / requests;
  std::printf("%-44s %12.1f us %12.1f us %12.1f us %10s\n",
              "client overhead (1 in flight, instant server)", seqit * 1e6, bare * 1e6,
              (seqit - bare) * 1e6, (seqit - bare) < 1e-3 ? "< 1 ms ok" : "> 1 ms");
}

void concurrency(int in_flight, double delay_s, int requests) {
  DelayBackend delayed(delay_s);
  llm::ServerOptions so;
  so.port = 0;
  so.threads = in_flight + 16;
  so.model_names = {"delay"};
  llm::OpenAiServer server(delayed, so);
  server.start();
  llm::HttpBackend client(client_options(server.port(), in_flight));
  llm::Request request;
  request.kind = llm::RequestKind::completion;
  request.prompt = "x";
  {
    std::vector<std::future<llm::Result<llm::Response>>> warm;
    for (int i = 0; i < in_flight; ++i) warm.push_back(client.submit_async(request));
    for (auto& f : warm) f.get();
  }
  auto t0 = Clock::now();
  const double cpu0 = cpu_seconds();
  std::vector<std::future<llm::Result<llm::Response>>> futures;
  for (int i = 0; i < requests; ++i) futures.push_back(client.submit_async(request));
  int failed = 0;
  for (auto& f : futures) failed += f.get().ok() ? 0 : 1;
  const double took = seconds_since(t0);
  const double cpu = cpu_seconds() - cpu0;
  const double ideal = requests * delay_s / in_flight;
  std::printf("%-44s %9.0f req/s %9.0f req/s %12.3f x %10s%s\n",
              ("64 in flight, server delay " + std::to_string(int(delay_s * 1000)) + " ms").c_str(),
              requests / took, requests / ideal, ideal / took,
              ideal / took >= 0.9 ? ">= 0.9 ok" : "< 0.9", failed ? " (failures!)" : "");
  std::printf("%-44s %.0f us CPU per request (client + server), %.2f cores busy\n", "  (cost)",
              1e6 * cpu / requests, cpu / took);
}

void local_batching(const std::string& tokenizer_path, int concurrent, int sequential, int tokens) {
  model::RandomWeights weights(bench::llama_155m_config(), 1, 0.02f);
  std::shared_ptr<const model::LlamaModel> m =
      model::LlamaModel::load(weights, {.dtype = tensor::DType::f32, .pack_for_inference = true});
  std::shared_ptr<const tokenizer::Tokenizer> tok = tokenizer::load_tokenizer(tokenizer_path);
  llm::LocalBackendOptions lo;
  lo.model_name = "llama-155m-random";
  lo.max_batch = concurrent;
  llm::LocalBackend backend(m, tok, lo);
  llm::ServerOptions so;
  so.port = 0;
  llm::OpenAiServer server(backend, so);
  server.start();
  auto run = [&](int count, int in_flight) {
    llm::HttpBackend client(client_options(server.port(), in_flight, lo.model_name));
    llm::SamplingParams p;
    p.temperature = 0;
    p.max_tokens = tokens;
    std::vector<std::future<llm::Result<llm::Response>>> futures;
    auto t0 = Clock::now();
    int64_t generated = 0;
    if (in_flight == 1) {
      for (int i = 0; i < count; ++i) {
        auto r =
            client.complete("Request " + std::to_string(i) + ": tell me a story about the sea.", p);
        if (!r.ok()) std::fprintf(stderr, "request failed: %s\n", r.error().describe().c_str());
        generated += r.ok() ? r.value().usage.completion_tokens : 0;
      }
    } else {
      for (int i = 0; i < count; ++i)
        futures.push_back(client.complete_async(
            "Request " + std::to_string(i) + ": tell me a story about the sea.", p));
      for (auto& f : futures) {
        auto r = f.get();
        generated += r.ok() ? r.value().usage.completion_tokens : 0;
      }
    }
    return generated / seconds_since(t0);
  };
  run(1, 1);  // warm-up (oneDNN primitives)
  const double one = run(sequential, 1);
  const double batched = run(concurrent, concurrent);
  std::printf(
      "%-44s %9.1f tok/s %9.1f tok/s %12.2f x %10s\n",
      ("local server, " + std::to_string(concurrent) + " concurrent vs 1 at a time").c_str(),
      batched, one, batched / one, batched / one >= 5 ? ">= 5x ok" : "< 5x");
  auto st = backend.stats();
  std::printf("%-44s %lld steps, up to %lld sequences per step\n", "  (engine)",
              (long long)st.steps, (long long)st.max_running);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, tokens = 0;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (a == "--quick") quick = true;
    if (a == "--tokens" && i + 1 < argc) tokens = std::atoi(argv[++i]);  // per request, part 3
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_llm [--threads N] [--quick] [--tokens N]\n"
          "Client overhead per request (vs bare libcurl), 64 requests in flight (vs the ideal), "
          "and the\n"
          "local server's throughput with 16 concurrent requests (vs one at a time) on the 155.7M "
          "Llama.\n"
          "  --threads N  compute threads (default 2)\n"
          "  --quick      fewer requests\n"
          "  --tokens N   new tokens per request in the server part (default 32)\n");
      return 0;
    }
  }
  tensor::set_num_threads(threads);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::printf("bench_llm: %d compute threads; load average at start: %s\n\n", threads,
              load_average().c_str());
  std::printf("%-44s %15s %15s %15s %10s\n", "measure", "seqit", "reference", "difference/ratio",
              "target");
  client_overhead(quick ? 200 : 2000);
  concurrency(64, 0.05, quick ? 640 : 64 * 20);
  const char* shared = std::getenv("SEQIT_SHARED_DATA");
  std::string tok = std::string(shared && *shared ? shared : SEQIT_SHARED_DATA_DEFAULT) +
                    "/tokenizers/llama2/tokenizer.json";
  local_batching(tok, 16, quick ? 2 : 4, tokens > 0 ? tokens : (quick ? 16 : 32));
  std::printf(
      "\nreferences: bare libcurl loop on the same server; ideal = 64 / delay; 1 request at a time "
      "on the same "
      "server.\nload average at end: %s\n",
      load_average().c_str());
  return 0;
}
