// Tokenizer encode throughput, one thread: every line of the given corpus files is encoded
// (as an engine encodes prompts, one request at a time), best of several passes. Prints JSON.
//   tokenizer_bench --tokenizer DIR [--tokenizer DIR2 ...] [--passes N] [--commit SHA] FILE...
// bench/run_tokenizer_bench.sh runs it next to python/bench_tokenizer_hf.py.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sparrow/core/machine_info.h"
#include "sparrow/tokenizer/tokenizer.h"

namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> tokenizers, files;
  int passes = 5;
  std::string commit;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc) {
      tokenizers.push_back(argv[++i]);
    } else if (a == "--passes" && i + 1 < argc) {
      passes = std::stoi(argv[++i]);
    } else if (a == "--commit" && i + 1 < argc) {
      commit = argv[++i];
    } else {
      files.push_back(a);
    }
  }
  if (tokenizers.empty()) tokenizers.push_back(SPARROW_SOURCE_DIR "/tests/testdata/tokenizers/qwen3");
  if (files.empty()) files.push_back(SPARROW_SOURCE_DIR "/tests/testdata/corpus/persuasion.txt");
  if (commit.empty()) commit = sparrow::git_commit();

  std::vector<std::string> lines;
  size_t bytes = 0;
  for (const auto& path : files) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot read %s\n", path.c_str());
      return 2;
    }
    std::string line;
    while (std::getline(f, line)) {
      bytes += line.size();
      lines.push_back(std::move(line));
    }
  }

  nlohmann::ordered_json out;
  out["benchmark"] = "tokenizer_encode";
  out["implementation"] = "sparrow";
  out["machine"] = {{"cpu", cpu_model()}, {"hardware_threads", std::thread::hardware_concurrency()}};
  out["git_commit"] = commit;
  out["threads"] = 1;
  out["corpus_files"] = files.size();
  out["lines"] = lines.size();
  out["bytes"] = bytes;
  out["results"] = nlohmann::ordered_json::array();
  for (const auto& dir : tokenizers) {
    auto tok = sparrow::Tokenizer::from_dir(dir);
    double best = 1e30, first = 0;
    size_t tokens = 0;
    for (int p = 0; p < passes; ++p) {
      auto t0 = std::chrono::steady_clock::now();
      size_t n = 0;
      for (const auto& l : lines) n += tok->encode(l).size();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (p == 0) first = s;
      best = std::min(best, s);
      tokens = n;
    }
    std::string name = dir.substr(dir.find_last_of('/') + 1);
    out["results"].push_back({{"tokenizer", name},
                              {"tokens", tokens},
                              {"seconds_best", best},
                              {"mb_per_s", bytes / best / 1e6},
                              {"mb_per_s_first_pass", bytes / first / 1e6}});
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
