// Binding a cpp-httplib server so that bursts of connections are not dropped.
#pragma once

#include <string>

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

}  // namespace seqit::llm
