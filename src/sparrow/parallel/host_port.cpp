#include "sparrow/parallel/host_port.h"

#include <charconv>

#include "sparrow/core/error.h"

namespace sparrow {

std::string HostPort::str() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

HostPort parse_host_port(std::string_view s, std::string_view what) {
  auto bad = [&](std::string_view why) {
    throw_input_error("{} '{}': {} (expected host:port, e.g. 10.0.0.1:29500 or [fe80::1]:29500)", what, s, why);
  };
  std::string_view host, port;
  if (!s.empty() && s.front() == '[') {
    // Brackets because an IPv6 address has colons of its own.
    const size_t close = s.find(']');
    if (close == std::string_view::npos) bad("unclosed '['");
    host = s.substr(1, close - 1);
    if (close + 1 >= s.size() || s[close + 1] != ':') bad("no ':port' after the bracketed address");
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) bad("no port");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) bad("an IPv6 address needs brackets");
  }
  if (host.empty()) bad("empty host");
  int p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size()) bad("the port is not a number");
  if (p < 1 || p > 65535) bad("the port must be in 1..65535");
  return HostPort{std::string(host), p};
}

}  // namespace sparrow
