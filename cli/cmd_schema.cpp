// assay spec: print the JSON Schemas and check documents against them.
#include <iostream>

#include "assay/specs.h"
#include "assay/validate.h"
#include "registry.h"

namespace {

void add_spec(CLI::App& app) {
  auto* s = app.add_subcommand("spec", "Print a spec's JSON Schema, or check a spec file");
  s->require_subcommand(1);
  auto kind = std::make_shared<std::string>();
  auto file = std::make_shared<std::string>();
  const std::vector<std::string> kinds = {"sweep", "run", "suite", "metric-line"};

  auto* show = s->add_subcommand("schema", "Print the JSON Schema (draft 2020-12) of a spec kind");
  show->add_option("kind", *kind, "sweep | run | suite | metric-line")->required()
      ->check(CLI::IsMember(kinds));
  show->callback([kind] {
    auto t = assay::schemas::embedded_schema_text(*kind + ".schema.json");
    std::cout << (t.ok() ? *t : t.status().message()) << "\n";
  });

  auto* check = s->add_subcommand("check", "Check a spec file; print what is wrong and where");
  check->add_option("kind", *kind, "sweep | run | suite")->required()
      ->check(CLI::IsMember({"sweep", "run", "suite"}));
  check->add_option("file", *file, "The JSON document")->required();
  check->footer("\nExample:\n  assay spec check sweep examples/sweeps/lr-grid.json");
  check->callback([kind, file] {
    assay::Status st;
    if (*kind == "sweep") st = assay::schemas::load_sweep_spec(*file).status();
    else if (*kind == "run") st = assay::schemas::load_run_spec(*file).status();
    else st = assay::schemas::load_suite_spec(*file).status();
    if (!st.ok()) {
      std::cerr << st.message() << "\n";
      assay::cli::set_exit_code(1);
      return;
    }
    std::cout << *file << ": ok\n";
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(90, add_spec);
