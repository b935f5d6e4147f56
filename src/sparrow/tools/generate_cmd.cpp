// `sparrow generate`: offline generation / scoring, printing SGLang /generate-shaped JSON.
#include <CLI/CLI.hpp>

#include "sparrow/tools/commands.h"

namespace sparrow::tools {

void register_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Run a batch of prompts offline and print JSON results");
  cmd->callback([] {});
}

}  // namespace sparrow::tools
