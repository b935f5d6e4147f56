// The `sparrow` command: subcommands are registered by the files that implement them.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "sparrow/core/error.h"
#include "sparrow/tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Sparrow: a serving engine for Mixture-of-Experts language models"};
  app.require_subcommand(1);
  sparrow::tools::register_generate_command(app);
  sparrow::tools::register_parity_command(app);
  sparrow::tools::register_tokenize_commands(app);
  sparrow::tools::register_serve_command(app);
  sparrow::tools::register_bench_serving_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sparrow::InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
