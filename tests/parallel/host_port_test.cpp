// --dist-init-addr parsing: the forms accepted and a clear InputError for the others.
#include "sparrow/parallel/host_port.h"

#include <gtest/gtest.h>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

TEST(HostPort, ParsesNamesIpv4AndBracketedIpv6) {
  HostPort a = parse_host_port("node-0.cluster:29500");
  EXPECT_EQ(a.host, "node-0.cluster");
  EXPECT_EQ(a.port, 29500);
  HostPort b = parse_host_port("10.0.0.1:1");
  EXPECT_EQ(b.host, "10.0.0.1");
  EXPECT_EQ(b.port, 1);
  HostPort c = parse_host_port("[fe80::1]:65535");
  EXPECT_EQ(c.host, "fe80::1");
  EXPECT_EQ(c.port, 65535);
  EXPECT_EQ(c.str(), "[fe80::1]:65535");
  EXPECT_EQ(a.str(), "node-0.cluster:29500");
}

TEST(HostPort, RejectsMalformedAddressesNamingTheFlag) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"node0", "no port"},
      {":29500", "empty host"},
      {"node0:", "not a number"},
      {"node0:29x", "not a number"},
      {"node0:0", "1..65535"},
      {"node0:70000", "1..65535"},
      {"node0:-1", "1..65535"},
      {"fe80::1:29500", "needs brackets"},
      {"[fe80::1:29500", "unclosed"},
      {"[fe80::1]29500", "no ':port'"},
      {"[]:29500", "empty host"},
  };
  for (const auto& [text, why] : bad) {
    try {
      (void)parse_host_port(text);
      ADD_FAILURE() << text << " was accepted";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("--dist-init-addr '" + text + "'"), std::string::npos) << m;
      EXPECT_NE(m.find(why), std::string::npos) << text << ": " << m;
    }
  }
}

}  // namespace
}  // namespace sparrow
