#include "llm/http_listen.h"

#include <fmt/format.h>
#include <httplib.h>
#include <linux/filter.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "util/error.h"

namespace seqit::llm {

namespace {

struct Bound {
  int port = 0;
  int socket = -1;
};

Bound bind_server(httplib::Server& server, const std::string& host, int port, int backlog) {
  int listening_socket = -1;
  // Called on the new socket before bind: note it, and keep httplib's default option (reuse the
  // address of a server that just stopped).
  server.set_socket_options([&listening_socket](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listening_socket = sock;
  });
  int bound = port;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (!server.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0 || listening_socket < 0)
    throw Error(fmt::format("cannot listen on {}:{}: {}", host, port, std::strerror(errno)));
  // listen() again on a listening socket only changes its backlog (Linux).
  if (::listen(listening_socket, backlog) != 0)
    throw Error(fmt::format("cannot raise the listen backlog on {}:{}: {}", host, bound,
                            std::strerror(errno)));
  return {bound, listening_socket};
}

// Makes the kernel drop every packet that reaches the listening socket from now on: new SYNs go
// unanswered (the client resends one after a second, and by then the socket is closed: connection
// refused), while connections already in the accept queue have sockets of their own and carry on.
// Closing a listening socket resets the connections in its queue; this keeps the queue from
// filling again while it is emptied.
void refuse_new_connections(int listening_socket) {
  sock_filter drop_all[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  sock_fprog program{1, drop_all};
  ::setsockopt(listening_socket, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
}

bool connections_waiting(int listening_socket) {
  pollfd p{listening_socket, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

// httplib's thread pool, plus a count of accepted connections not yet picked up by a worker.
class CountingQueue : public httplib::TaskQueue {
 public:
  CountingQueue(size_t threads, std::shared_ptr<std::atomic<int64_t>> queued)
      : pool_(threads), queued_(std::move(queued)) {}

  void enqueue(std::function<void()> fn) override {
    queued_->fetch_add(1);
    pool_.enqueue([fn = std::move(fn), queued = queued_] {
      queued->fetch_sub(1);
      fn();
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  std::shared_ptr<std::atomic<int64_t>> queued_;
};

}  // namespace

int bind_http_server(httplib::Server& server, const std::string& host, int port, int backlog) {
  return bind_server(server, host, port, backlog).port;
}

HttpListener::HttpListener(httplib::Server& server, size_t threads) : server_(server) {
  server_.new_task_queue = [threads, queued = queued_] {
    return new CountingQueue(threads, queued);
  };
  // Once stopping, every answer ends its connection (a keep-alive client cannot hold it open).
  server_.set_pre_routing_handler(
      [draining = draining_](const httplib::Request&, httplib::Response& res) {
        if (draining->load()) res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Unhandled;
      });
}

HttpListener::~HttpListener() {
  stop();
}

int HttpListener::start(const std::string& host, int port) {
  std::lock_guard lock(mutex_);
  if (started_) throw Error("HttpListener::start: already started");
  const Bound bound = bind_server(server_, host, port, 4096);
  listening_socket_ = bound.socket;
  started_ = true;
  thread_ = std::thread([this] {
    server_.listen_after_bind();
    loop_returned_ = true;
  });
  // listen_after_bind marks the server running first thing; until then a stop would be lost.
  while (!server_.is_running() && !loop_returned_.load())
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  return bound.port;
}

void HttpListener::stop() {
  {
    std::lock_guard lock(mutex_);
    if (!started_ || stopped_) return;
    stopped_ = true;
  }
  draining_->store(true);
  refuse_new_connections(listening_socket_);
  // The accept loop empties the kernel's queue; wait until no accepted connection waits for a
  // worker either (a worker that has just picked one up reads its request within microseconds, so
  // both must stay empty for a moment).
  using namespace std::chrono_literals;
  for (int quiet = 0; quiet < 5 && !loop_returned_.load();) {
    const bool idle = queued_->load() == 0 && !connections_waiting(listening_socket_);
    quiet = idle ? quiet + 1 : 0;
    std::this_thread::sleep_for(1ms);
  }
  server_.stop();
  if (thread_.joinable()) thread_.join();  // the loop ends, then its pool joins its workers
}

}  // namespace seqit::llm
