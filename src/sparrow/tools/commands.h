// Each `sparrow` subcommand registers itself on the CLI app from its own file.
#pragma once

namespace CLI {
class App;
}

namespace sparrow::tools {

void register_generate_command(CLI::App& app);
void register_parity_command(CLI::App& app);
void register_tokenize_commands(CLI::App& app);
void register_serve_command(CLI::App& app);
void register_bench_serving_command(CLI::App& app);

}  // namespace sparrow::tools
