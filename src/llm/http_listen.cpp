#include "llm/http_listen.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace seqit::llm {

int bind_http_server(httplib::Server& server, const std::string& host, int port, int backlog) {
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
  return bound;
}

}  // namespace seqit::llm
