// assay db init|migrate|status: manage the results database.
#include <filesystem>
#include <iostream>

#include "assay/store.h"
#include "registry.h"

namespace {

using assay::cli::set_exit_code;

int fail(const std::string& cmd, const assay::Status& st) {
  std::cerr << "assay db " << cmd << ": " << st.message() << "\n";
  return 1;
}

void add_db(CLI::App& app) {
  auto* db = app.add_subcommand("db", "Create, upgrade and inspect the results database");
  db->require_subcommand(1);
  db->footer(
      "\nThe database is one SQLite file (WAL mode). Migrations are embedded in the binary\n"
      "and applied in order; a database written by a newer assay is refused.\n\n"
      "Examples:\n"
      "  assay db init --db results.db\n"
      "  assay db status --db results.db");
  auto path = std::make_shared<std::string>("assay.db");

  auto* init = db->add_subcommand("init", "Create a new database at the latest schema version");
  init->add_option("--db", *path, "Database file")->capture_default_str();
  init->callback([path] {
    if (std::filesystem::exists(*path)) {
      set_exit_code(fail("init", assay::Status::AlreadyExists(
          *path + ": already exists; use `assay db migrate` to upgrade it")));
      return;
    }
    auto v = assay::store::migrate(*path, /*create=*/true);
    if (!v.ok()) return set_exit_code(fail("init", v.status()));
    std::cout << "created " << *path << " at schema version " << *v << "\n";
  });

  auto* mig = db->add_subcommand("migrate", "Apply pending migrations to an existing database");
  mig->add_option("--db", *path, "Database file")->capture_default_str();
  mig->callback([path] {
    auto before = assay::store::schema_version_of(*path);
    if (!before.ok()) return set_exit_code(fail("migrate", before.status()));
    auto v = assay::store::migrate(*path, /*create=*/false);
    if (!v.ok()) return set_exit_code(fail("migrate", v.status()));
    if (*v == *before)
      std::cout << *path << ": already at schema version " << *v << "\n";
    else
      std::cout << *path << ": migrated from version " << *before << " to " << *v << "\n";
  });

  auto* status = db->add_subcommand("status", "Show the schema version and row counts");
  status->add_option("--db", *path, "Database file")->capture_default_str();
  status->callback([path] {
    if (!std::filesystem::exists(*path))
      return set_exit_code(fail("status", assay::Status::NotFound(*path + ": no such database")));
    auto v = assay::store::schema_version_of(*path);
    if (!v.ok()) return set_exit_code(fail("status", v.status()));
    const int latest = assay::store::latest_schema_version();
    std::cout << "database:        " << *path << "\n"
              << "schema version:  " << *v << " (this binary: " << latest << ")\n";
    if (*v < latest) std::cout << "pending:         " << latest - *v << " migration(s); run `assay db migrate`\n";
    if (*v > latest) std::cout << "warning:         written by a newer assay; this binary refuses to write it\n";
    if (*v == 0) return;
    auto q = assay::store::query_readonly(*path,
        "SELECT (SELECT count(*) FROM sweeps), (SELECT count(*) FROM runs), "
        "(SELECT count(*) FROM metrics), (SELECT count(*) FROM artifacts), "
        "(SELECT count(*) FROM workers), (SELECT count(*) FROM eval_results)");
    if (!q.ok() || q->rows.empty()) return;
    const char* names[] = {"sweeps", "runs", "metric points", "artifacts", "workers", "eval results"};
    for (size_t i = 0; i < 6; ++i)
      std::cout << (std::string(names[i]) + ":").append(17 - std::string(names[i]).size() - 1, ' ')
                << std::get<int64_t>(q->rows[0][i]) << "\n";
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(10, add_db);
