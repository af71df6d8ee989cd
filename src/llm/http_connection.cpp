#include "llm/http_connection.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace seqit::llm {

namespace {

thread_local ClientConnection* serving = nullptr;

constexpr char kInterimProbe[] = "HTTP/1.1 100 Continue\r\n\r\n";

// Waits up to `timeout_ms` (-1: forever) for `events` on `fd`; returns the events seen (0: none).
short wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return p.revents;
    if (n == 0) return 0;
    if (errno != EINTR) return POLLERR;
  }
}

int to_ms(time_t sec, time_t usec) {
  return static_cast<int>(sec * 1000 + usec / 1000);
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char host[NI_MAXHOST], service[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host), service,
                    sizeof(service), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return;
  ip = host;
  port = std::atoi(service);
}

// The bytes of one connection, as httplib's parser and writer see them. Reads are buffered
// (httplib reads a request line one byte at a time). Unlike httplib's stream, a write is refused
// only when the socket is not writable or the peer has reset: not because the client has shut
// down its sending side.
class ConnectionStream : public httplib::Stream {
 public:
  // `gone` is set when a write fails.
  ConnectionStream(int fd, int read_timeout_ms, int write_timeout_ms, bool& gone)
      : fd_(fd),
        read_timeout_ms_(read_timeout_ms),
        write_timeout_ms_(write_timeout_ms),
        gone_(gone) {}

  bool is_readable() const override {
    return begin_ < end_ || (wait_for(fd_, POLLIN, read_timeout_ms_) & (POLLIN | POLLHUP)) != 0;
  }

  bool is_writable() const override {
    const short events = wait_for(fd_, POLLOUT, write_timeout_ms_);
    return (events & POLLOUT) != 0 && (events & (POLLHUP | POLLERR | POLLNVAL)) == 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (begin_ == end_) {
      if (!is_readable()) return -1;
      const ssize_t n = ::recv(fd_, buffer_, sizeof(buffer_), 0);
      if (n <= 0) return n;  // 0: the client sent everything it will send
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) {
      gone_ = true;
      return -1;
    }
    ssize_t n;
    do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) gone_ = true;  // EPIPE, ECONNRESET: the client has gone
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

  bool has_buffered_bytes() const { return begin_ < end_; }

 private:
  int fd_;
  int read_timeout_ms_, write_timeout_ms_;
  bool& gone_;
  char buffer_[4096];
  size_t begin_ = 0, end_ = 0;
};

}  // namespace

ClientConnection* ClientConnection::current() {
  return serving;
}

bool ClientConnection::gone(bool may_probe) {
  if (gone_) return true;
  const short events = wait_for(socket_, POLLRDHUP, 0);
  if (events & (POLLHUP | POLLERR | POLLNVAL)) {
    gone_ = true;
  } else if ((events & POLLRDHUP) && may_probe && !probed_) {
    probed_ = true;
    if (::send(socket_, kInterimProbe, sizeof(kInterimProbe) - 1, MSG_NOSIGNAL) < 0) gone_ = true;
  }
  return gone_;
}

bool ConnectionServer::process_and_close_socket(socket_t sock) {
  ClientConnection connection(sock);
  ConnectionStream stream(sock, to_ms(read_timeout_sec_, read_timeout_usec_),
                          to_ms(write_timeout_sec_, write_timeout_usec_), connection.gone_);
  serving = &connection;
  // The keep-alive loop of httplib's own process_server_socket, over this stream.
  bool ok = false;
  for (size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    // The next request: bytes already buffered, or the socket readable (or at its end, which the
    // parser then reads and stops at) within the keep-alive timeout.
    if (!stream.has_buffered_bytes() &&
        (wait_for(sock, POLLIN, static_cast<int>(keep_alive_timeout_sec_ * 1000)) &
         (POLLIN | POLLHUP | POLLERR)) == 0)
      break;
    connection.begin_request();
    bool closed = false;
    ok = process_request(stream, /*close_connection=*/left == 1, closed, nullptr);
    if (!ok || closed || connection.gone_) break;
  }
  serving = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace seqit::llm
