// Serving each HTTP connection with a socket stream of our own under httplib's request parser, so
// that a client that half-closes its socket still gets its answer, and a handler can tell while it
// waits for the engine whether its client has gone.
//
// httplib's own stream (0.11) refuses to write once a read would return end-of-file: a client that
// sends its request and then shutdown(SHUT_WR)s — allowed by TCP and HTTP, done by some scripts and
// proxies — never gets the answer. Its handlers cannot see the socket either, so a client that gave
// up went on costing engine time until its answer was written into a closed connection.
//
// Gone or half-closed? TCP shows both alike at first: the peer's FIN (POLLRDHUP; a read returns 0
// bytes). They differ only once we send: a socket that was closed answers data with a reset, a
// half-closed one takes it. So, for the request being served:
//   - POLLHUP or POLLERR (a reset came, or both directions are shut), or a send that fails: gone.
//   - a FIN after the request arrived: not gone by itself. Once per request we send an interim
//     "100 Continue" as a probe — every HTTP/1.1 client must accept 1xx answers before the final
//     one, even unasked (RFC 9110 §15.2) — and a closed peer resets the connection within a round
//     trip, which the next check sees. An HTTP/1.0 client may not be sent 1xx: its FIN is taken
//     for a half-close and its request runs to the end.
//   - bytes from the client (a pipelined next request) are left for the next request.
// A client that never sends a FIN and never resets (a frozen machine) is found by the write timeout
// when the answer is written, as before.
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstddef>
#include <string>

namespace seqit::llm {

class ClientConnection {
 public:
  // The connection whose request this thread is serving (from inside a handler), or nullptr.
  static ClientConnection* current();

  // Whether the client is known to have gone (see the header comment). `may_probe`: the request is
  // HTTP/1.1 and nothing of its answer has been written yet, so a 100 Continue may be sent. Cheap
  // (one poll with no wait); call it every few tens of milliseconds while waiting.
  bool gone(bool may_probe);

 private:
  friend class ConnectionServer;
  explicit ClientConnection(int socket) : socket_(socket) {}
  void begin_request() { probed_ = false; }

  int socket_;
  bool probed_ = false;
  bool gone_ = false;
};

// An httplib::Server whose connections are served as above. Configure it as an httplib::Server.
class ConnectionServer : public httplib::Server {
 private:
  bool process_and_close_socket(socket_t sock) override;
};

}  // namespace seqit::llm
