// Subcommand registry. Each cli/cmd_*.cpp registers its subcommands with
// ASSAY_REGISTER_COMMAND; main() adds them to the app in `order`.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace assay::cli {

using CommandAdder = std::function<void(CLI::App&)>;

struct CommandRegistrar {
  CommandRegistrar(int order, CommandAdder adder);
};

// Calls every registered adder, lowest order first.
void add_registered_commands(CLI::App& app);

// Exit code reported when a subcommand's callback failed; the callback prints
// the error itself. Subcommands set it through set_exit_code.
void set_exit_code(int code);
int exit_code();

}  // namespace assay::cli

#define ASSAY_REGISTER_COMMAND(order, fn) \
  static ::assay::cli::CommandRegistrar ASSAY_CLI_CONCAT(assay_cmd_, __LINE__)(order, fn)
#define ASSAY_CLI_CONCAT_INNER(a, b) a##b
#define ASSAY_CLI_CONCAT(a, b) ASSAY_CLI_CONCAT_INNER(a, b)
