// assay query "SQL": read-only SQL against the results database.
#include <iostream>

#include <nlohmann/json.hpp>

#include "assay/store.h"
#include "registry.h"
#include "table.h"

namespace {

void add_query(CLI::App& app) {
  struct Opts {
    std::string db = "assay.db";
    std::string sql;
    bool csv = false, json = false;
    size_t max_rows = 100000;
    double time_budget_s = 60;
  };
  auto o = std::make_shared<Opts>();
  auto* q = app.add_subcommand("query", "Run a read-only SQL query against the results database");
  q->add_option("sql", o->sql, "One SELECT statement (or a read-only PRAGMA)")->required();
  q->add_option("--db", o->db, "Database file")->capture_default_str();
  auto* csv = q->add_flag("--csv", o->csv, "Print CSV (RFC 4180) instead of a table");
  q->add_flag("--json", o->json, "Print a JSON array of objects")->excludes(csv);
  q->add_option("--max-rows", o->max_rows, "Stop after this many rows")->capture_default_str();
  q->add_option("--time-budget", o->time_budget_s,
                "Stop the query with an error after this many seconds (0 = no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  q->footer(
      "\nThe connection is read-only and an authorizer refuses any write, ATTACH, writing\n"
      "PRAGMA or second statement before it runs.\n\n"
      "Tables: sweeps, runs, run_events, metrics, metric_keys, artifacts, workers, eval_results\n"
      "Views:  run_summary, run_metric_summary (the current attempt),\n"
      "        run_metric_summary_by_attempt, runs_wide (params and metrics as columns),\n"
      "        eval_summary (eval results joined to the run that made the checkpoint)\n\n"
      "Examples:\n"
      "  assay query --db results.db \"SELECT * FROM run_summary\"\n"
      "  assay query --db results.db --csv \"SELECT run_id, metric, final FROM run_metric_summary\"\n"
      "  assay query --db results.db \"SELECT * FROM runs_wide WHERE lr > 1e-4 ORDER BY loss_final\"");
  q->callback([o] {
    assay::store::QueryLimits limits;
    limits.max_rows = o->max_rows;
    limits.time_budget_s = o->time_budget_s;
    limits.budget_name = "--time-budget";
    auto r = assay::store::query_readonly(o->db, o->sql, limits);
    if (!r.ok()) {
      std::cerr << "assay query: " << r.status().message() << "\n";
      assay::cli::set_exit_code(1);
      return;
    }
    if (o->json) assay::cli::print_json(std::cout, *r);
    else if (o->csv) assay::cli::print_csv(std::cout, *r);
    else assay::cli::print_table(std::cout, *r);
    if (r->truncated)
      std::cerr << "assay query: stopped after " << o->max_rows << " rows (--max-rows)\n";
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(20, add_query);
