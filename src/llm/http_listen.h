// Running a cpp-httplib server without its lifecycle races.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace seqit::llm {

// Binds `server` to host:port (port 0: a free port chosen by the system) and returns the port.
// Debian's cpp-httplib listens with a backlog of 5, so a burst of simultaneous connections (64
// clients, say) overflows it and the kernel drops SYNs that the clients resend only after a
// second; this raises the backlog to `backlog` on the bound socket. Throws seqit::Error when the
// address cannot be bound.
int bind_http_server(httplib::Server& server, const std::string& host, int port,
                     int backlog = 4096);

// Starts and stops a cpp-httplib server (0.11) safely. httplib alone has two races:
// - Server::stop() does nothing until the listen loop has marked itself running, so a stop that
//   comes right after the listen thread was started is lost and the loop blocks in accept()
//   forever. start() returns only once the loop runs, so any later stop() takes effect.
// - After Server::stop(), a worker that picks up a connection accepted just before (still queued
//   in the pool) closes it without reading it, and closing the listening socket resets the
//   connections still in the kernel's accept queue: those clients get a TCP reset although their
//   request came before the stop. stop() here drains first: new SYNs are dropped from that moment
//   (the client retries after a second and finds the port closed: connection refused); the
//   connections already made are accepted and served as usual, each answer now with
//   Connection: close; once neither queue holds a connection, the listener closes and the workers
//   finish what they hold. So every connection made before the stop is served, and a later one is
//   refused, never reset.
class HttpListener {
 public:
  // Installs on `server` a task queue of `threads` workers and a pre-routing handler (the server
  // must not set its own). The server must outlive the listener.
  HttpListener(httplib::Server& server, size_t threads);
  ~HttpListener();  // stop()s
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // Binds (bind_http_server) and runs the accept loop on a thread; returns the port once the loop
  // accepts connections. Throws seqit::Error when the address cannot be bound. Once only.
  int start(const std::string& host, int port);
  // Drains as described above, stops the loop, joins the workers. Idempotent; returns at once when
  // the listener never started. Safe from any thread but the server's own workers.
  void stop();
  bool stopping() const { return draining_->load(); }

 private:
  httplib::Server& server_;
  std::shared_ptr<std::atomic<bool>> draining_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<int64_t>> queued_ = std::make_shared<std::atomic<int64_t>>(0);
  std::atomic<bool> loop_returned_{false};
  int listening_socket_ = -1;
  std::mutex mutex_;
  bool started_ = false, stopped_ = false;
  std::thread thread_;
};

}  // namespace seqit::llm
