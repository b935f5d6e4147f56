// The parallel flags of serve / generate / parity as the command line gives them: the
// multi-node ones reach EngineOptions, and combinations that cannot work fail with an
// InputError naming the flags and the numbers, before any model is loaded.
#include "sparrow/tools/parallel_flags.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

namespace sparrow::tools {
namespace {

EngineOptions apply_args(const std::string& args) {
  ParallelFlags f;
  CLI::App app{"test"};
  add_parallel_flags(app, f);
  app.parse(args, false);
  EngineOptions o;
  f.apply(o);
  return o;
}

TEST(ParallelFlags, SingleNodeByDefault) {
  const EngineOptions o = apply_args("--tp-size 2");
  EXPECT_EQ(o.parallel.nnodes, 1);
  EXPECT_EQ(o.parallel.node_rank, 0);
  EXPECT_EQ(o.parallel.dist_init_addr, "");
}

TEST(ParallelFlags, MultiNodeFlagsReachTheEngineOptions) {
  const EngineOptions o = apply_args("--tp-size 4 --nnodes 2 --node-rank 1 --dist-init-addr 10.0.0.1:29500");
  EXPECT_EQ(o.parallel.layout.tp_size, 4);
  EXPECT_EQ(o.parallel.nnodes, 2);
  EXPECT_EQ(o.parallel.node_rank, 1);
  EXPECT_EQ(o.parallel.dist_init_addr, "10.0.0.1:29500");
}

TEST(ParallelFlags, DescribeNamesTheNode) {
  ParallelFlags f;
  f.tp_size = 4;
  f.nnodes = 2;
  f.node_rank = 1;
  EXPECT_NE(f.describe().find("node 1 of 2"), std::string::npos) << f.describe();
}

TEST(ParallelFlags, RejectsMultiNodeFlagsThatCannotWork) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--nnodes 0", "--nnodes must be >= 1, got 0"},
      {"--tp-size 2 --nnodes 2 --node-rank 2 --dist-init-addr h:1", "--node-rank 2 must be in 0..1 (--nnodes 2)"},
      {"--tp-size 2 --nnodes 2 --node-rank -1 --dist-init-addr h:1", "--node-rank -1 must be in 0..1"},
      {"--node-rank 1", "--node-rank 1 must be in 0..0 (--nnodes 1)"},
      {"--tp-size 3 --nnodes 2 --dist-init-addr h:1", "--tp-size 3 must be a multiple of --nnodes 2"},
      {"--tp-size 2 --nnodes 2", "--nnodes 2 needs --dist-init-addr host:port"},
      {"--tp-size 2 --nnodes 2 --dist-init-addr node0", "--dist-init-addr 'node0': no port"},
      {"--tp-size 2 --nnodes 2 --dist-init-addr node0:99999", "the port must be in 1..65535"},
      {"--dist-init-addr :29500", "--dist-init-addr ':29500': empty host"},
  };
  for (const auto& [args, message] : cases) {
    try {
      (void)apply_args(args);
      ADD_FAILURE() << args << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << args << ": " << e.what();
    }
  }
}

}  // namespace
}  // namespace sparrow::tools
