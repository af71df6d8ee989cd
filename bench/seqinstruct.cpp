// Seq-Instruct pipeline speed: what the pipeline costs beyond its backend's time.
//  1. Overhead per item: the pipeline (2 passes; classify + respond per item, the replies "Option:
//     D") over a backend that answers at once, minus the same requests sent straight to that
//     backend with the same number in flight, measured in the same run. Target: < 1 ms per item.
//  2. Concurrency: 64 items in flight through the HTTP backend against a local server that answers
//     each request after a fixed delay; items/s as a fraction of the server's capacity
//     (64 / delay / requests per item). Target: >= 0.9 at 100 ms per reply; the 20 ms row shows
//     where the HTTP and JSON work of both ends (on the same cores) starts to cost.
//  3. Local engine: the direct-response stage over stories260K (greedy, fixed token budget) through
//     the pipeline vs the same requests sent straight to the engine all at once (what `seqit
//     generate` does; the engine batches 16), alternating rounds, best of each. Target: >= 0.8x.
//
//   bench_seqinstruct [--quick]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "bench_util.h"
#include "delay_backend.h"
#include "llm/http_backend.h"
#include "llm/local_backend.h"
#include "llm/server.h"
#include "seqinstruct/pipeline.h"
#include "util/log.h"

namespace {
using namespace seqit;
using bench::DelayBackend;

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::vector<seqinstruct::SourceItem> items(int n) {
  std::vector<seqinstruct::SourceItem> out;
  for (int i = 0; i < n; ++i) {
    seqinstruct::SourceItem s;
    s.id = std::to_string(i);
    s.index = i;
    s.instruction = "Write a short story about a cat number " + std::to_string(i) + ".";
    s.input = i % 2 ? "" : "The cat is called Tom.";
    out.push_back(s);
  }
  return out;
}

// The same requests the pipeline sends, straight to `backend`, `in_flight` at a time.
double straight_seconds(llm::Backend& backend, const std::vector<llm::Request>& requests,
                        int in_flight) {
  const double t0 = bench::now_seconds();
  std::vector<std::future<llm::Result<llm::Response>>> window;
  for (const auto& r : requests) {
    window.push_back(backend.submit_async(r));
    if (static_cast<int>(window.size()) >= in_flight) {
      window.front().get();
      window.erase(window.begin());
    }
  }
  for (auto& f : window) f.get();
  return bench::now_seconds() - t0;
}

// A backend that records every request it forwards.
class Recorder final : public llm::Backend {
 public:
  explicit Recorder(llm::Backend& inner) : inner_(inner) {}
  void submit(llm::Request request, llm::ResponseCallback done) override {
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
    }
    inner_.submit(std::move(request), std::move(done));
  }
  std::string default_model() const override { return inner_.default_model(); }
  std::string describe() const override { return inner_.describe(); }
  std::vector<llm::Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  llm::Backend& inner_;
  std::mutex mutex_;
  std::vector<llm::Request> requests_;
};

double run_pipeline_seconds(llm::Backend& backend, const std::vector<seqinstruct::SourceItem>& in,
                            const seqinstruct::PipelineOptions& o) {
  const auto prompts = seqinstruct::load_prompt_set("default");
  const std::string dir = "/tmp/bench_seqinstruct_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const double t0 = bench::now_seconds();
  seqinstruct::run_pipeline(backend, prompts, in, dir + "/trace.jsonl", o, /*fresh=*/true);
  const double took = bench::now_seconds() - t0;
  std::filesystem::remove_all(dir);
  return took;
}

void overhead(int n) {
  DelayBackend instant(0, [](const llm::Request&) { return std::string("Option: D"); });
  Recorder recorder(instant);
  seqinstruct::PipelineOptions o;
  o.iterations = 2;
  o.max_in_flight = 64;
  const auto in = items(n);
  run_pipeline_seconds(recorder, in, o);  // warm-up, and the request list
  const auto requests = recorder.requests();
  const double pipeline = run_pipeline_seconds(instant, in, o);
  const double straight = straight_seconds(instant, requests, 64);
  const double per_item = (pipeline - straight) / n;
  std::printf(
      "%-46s %10.1f us %10.1f us %10.1f us  %s\n",
      ("overhead per item (" + std::to_string(requests.size() / n) + " requests each)").c_str(),
      1e6 * pipeline / n, 1e6 * straight / n, 1e6 * per_item,
      per_item < 1e-3 ? "< 1 ms ok" : "> 1 ms");
}

void concurrency(int n, double delay_s) {
  DelayBackend delayed(delay_s, [](const llm::Request&) { return std::string("Option: D"); });
  llm::ServerOptions so;
  so.port = 0;
  so.threads = 64 + 16;
  so.model_names = {"delay"};
  llm::OpenAiServer server(delayed, so);
  server.start();
  llm::HttpBackendOptions ho;
  ho.base_urls = {"http://127.0.0.1:" + std::to_string(server.port()) + "/v1"};
  ho.model = "delay";
  ho.api_key_env = "";
  ho.max_in_flight = 64;
  ho.retry.max_retries = 0;
  llm::HttpBackend client(ho);
  seqinstruct::PipelineOptions o;
  o.iterations = 2;
  o.max_in_flight = 64;
  const double took = run_pipeline_seconds(client, items(n), o);
  const double requests_per_item = 2;                        // classify (D) + respond
  const double capacity = 64 / delay_s / requests_per_item;  // items/s
  const double rate = n / took;
  std::printf("%-46s %8.0f it/s %8.0f it/s %12.3f x  %s\n",
              ("64 in flight, server delay " + std::to_string(int(delay_s * 1000)) + " ms").c_str(),
              rate, capacity, rate / capacity, rate / capacity >= 0.9 ? ">= 0.9 ok" : "< 0.9");
}

void local_engine(int n, int tokens) {
  const char* env = std::getenv("SEQIT_SHARED_DATA");
  const std::filesystem::path data =
      std::filesystem::path(env && *env ? env : SEQIT_SHARED_DATA_DEFAULT) / "models" /
      "stories260K";
  llm::LocalBackendOptions lo;
  lo.max_batch = 16;
  auto backend = llm::LocalBackend::open((data / "stories260K.bin").string(),
                                         (data / "tok512.bin").string(), lo);
  Recorder recorder(*backend);
  seqinstruct::PipelineOptions o;
  o.mode = seqinstruct::Mode::direct;
  o.respond.temperature = 0;
  o.respond.max_tokens = tokens;
  o.max_in_flight = 32;  // twice the engine's batch, as `seqinstruct run --local` keeps: a finished
                         // sequence's place is taken at the next decoding step
  const auto in = items(n);
  run_pipeline_seconds(recorder, in, o);  // warm-up, and the request list
  const auto requests = recorder.requests();
  // Alternating rounds, best of each: the machine's speed drifts when it is shared.
  double pipeline = 1e30, straight = 1e30;
  for (int round = 0; round < 3; ++round) {
    pipeline = std::min(pipeline, run_pipeline_seconds(*backend, in, o));
    straight = std::min(straight, straight_seconds(*backend, requests, n));
  }
  std::printf("%-46s %8.1f it/s %8.1f it/s %12.3f x  %s\n",
              ("local stories260K, batch 16, " + std::to_string(tokens) + " tokens").c_str(),
              n / pipeline, n / straight, straight / pipeline,
              straight / pipeline >= 0.8 ? ">= 0.8 ok" : "< 0.8");
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  log::set_level(log::Level::warn);
  std::printf("bench_seqinstruct — cpu: %s; load %s\n\n", cpu_model().c_str(),
              bench::load_average().c_str());
  std::printf("%-46s %13s %13s %13s  %s\n", "", "seqit", "reference", "ratio/diff", "target");
  overhead(quick ? 2000 : 20000);
  concurrency(quick ? 320 : 1600, 0.1);   // a fast LLM server: 100 ms per reply
  concurrency(quick ? 640 : 3200, 0.02);  // stress: the client's and server's own CPU cost shows
  local_engine(quick ? 32 : 128, 32);
  std::printf(
      "\nreferences: (1) the same requests straight to the instant backend, 64 in flight; (2) the "
      "server's capacity, 64 / delay / 2 requests per item; (3) the same requests straight to the "
      "local engine, all at once (the engine batches 16), as seqit generate runs them.\n");
  return 0;
}
