// HostPort: a TCP endpoint named on the command line (--dist-init-addr host:port).
#pragma once

#include <string>
#include <string_view>

namespace sparrow {

struct HostPort {
  std::string host;  // a name or an address; IPv6 literals without the brackets
  int port = 0;
  std::string str() const;  // back to "host:port" ("[v6]:port")
};

// Parses "host:port" or "[ipv6]:port" with a port in 1..65535. Throws InputError naming
// `what` (the flag) and the text; nothing is resolved here.
HostPort parse_host_port(std::string_view s, std::string_view what = "--dist-init-addr");

}  // namespace sparrow
