// An OpenAI-compatible HTTP server over any llm::Backend (`seqit serve` puts the local engine
// behind it). Endpoints: GET /health, GET /metrics (Prometheus text: the ServerStats below),
// GET /v1/models, POST /v1/chat/completions and /v1/completions (stream=true answers as server-sent
// events). Errors are OpenAI-style JSON:
//   {"error": {"message", "type", "param", "code"}} with 400 (bad JSON or fields, prompt too long),
//   401 (missing or wrong API key), 404 (unknown model or path), 413 (body over max_body_bytes),
//   500.
// A request whose client goes away while it waits for the backend is cancelled there (the local
// engine drops its sequences at its next step); see http_connection.h for how a client that has
// gone is told from one that only half-closed its socket (which is answered).
// stop() stops accepting connections, lets every request in flight finish, and returns.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "llm/backend.h"

namespace httplib {
class Server;
}

namespace seqit::llm {

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback by default: exposing a model is a deliberate choice
  int port = 8080;                 // 0: a free port (see OpenAiServer::port())
  std::string api_key;             // when set, /v1/* needs "Authorization: Bearer <api_key>"
  // Model ids served; a request naming another gets 404. The first is used when a request names
  // none and is what /v1/models lists first. Empty: the backend's default_model().
  std::vector<std::string> model_names;
  int threads = 256;  // connections served at once (each request in flight holds one)
  // Larger request bodies get 413 without being read into memory (a chat request is a few KiB; a
  // parsed JSON body takes several times its size).
  size_t max_body_bytes = size_t{8} << 20;
  int keep_alive_timeout_s = 2;  // an idle connection is closed after this; also bounds stop()
};

struct ServerStats {
  int64_t requests = 0;   // API requests received (not /health)
  int64_t succeeded = 0;  // answered 200
  int64_t failed = 0;     // answered with an error status
  int64_t streamed = 0;   // of the succeeded, answered as server-sent events
  int64_t cancelled = 0;  // abandoned by their client (who went away) before the answer was done
  int64_t running = 0;    // now: requests whose backend work has not finished
};

class OpenAiServer {
 public:
  // The backend must outlive the server.
  OpenAiServer(Backend& backend, ServerOptions options);
  ~OpenAiServer();  // stop()s
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // Binds and starts serving on a background thread; throws seqit::Error when the address is taken.
  void start();
  int port() const { return port_; }
  // Blocks until stop() has finished.
  void wait();
  // Graceful: no new connections; requests in flight are answered; then returns. Idempotent.
  void stop();

  ServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace seqit::llm
