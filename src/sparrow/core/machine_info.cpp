#include "sparrow/core/machine_info.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace sparrow {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string git_commit() {
  // Set by runs from a copy of the tree whose .git is absent or not this tree's (the device machine).
  if (const char* env = std::getenv("SPARROW_COMMIT"); env && *env) return env;
  std::string out;
  if (FILE* p = popen("git -C " SPARROW_SOURCE_DIR " rev-parse HEAD 2>/dev/null", "r")) {
    char buf[128];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

nlohmann::json machine_json() {
  std::string cpu = "unknown", mem = "unknown";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);)
    if (line.rfind("MemTotal", 0) == 0) {
      mem = line.substr(line.find(':') + 1);
      break;
    }
  mem.erase(0, mem.find_first_not_of(' '));
  return {{"cpu", cpu}, {"logical_cores", std::thread::hardware_concurrency()}, {"mem_total", mem},
          {"avx512_bf16", bool(__builtin_cpu_supports("avx512bf16"))}};
}

}  // namespace sparrow
