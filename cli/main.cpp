// assay: one executable, many subcommands. See `assay --help`.
#include <CLI/CLI.hpp>

#include <iostream>

#include "assay/version.h"
#include "registry.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Assay: experiment orchestration and evaluation for LLM alignment, distillation and "
      "unlearning research.\n\n"
      "Sweeps expand into runs, runs are scheduled onto GPU workers, and every state change,\n"
      "metric, checkpoint and eval result lands in one SQLite database you can query with SQL.",
      "assay"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("assay ") + assay::kVersion);
  app.footer(
      "\nExamples:\n"
      "  assay db init --db results.db          create a results database\n"
      "  assay query --db results.db \"SELECT * FROM run_summary\"\n"
      "  assay <command> --help                 details and examples for one command");
  assay::cli::add_registered_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // A subcommand's callback let an exception through (a library throw, a
    // reply of an unexpected shape): report it instead of std::terminate.
    std::cerr << "assay: unexpected error: " << e.what() << "\n";
    return 1;
  } catch (...) {
    std::cerr << "assay: unexpected error of unknown type\n";
    return 1;
  }
  return assay::cli::exit_code();
}
