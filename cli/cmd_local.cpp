// assay local SWEEP.json: the single-machine default. An embedded
// coordinator and worker in one process, the database at ./assay.db, and a
// results table when the sweep ends. No tokens, ports or daemons to set up.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"
#include "assay/coordinator_routes.h"
#include "assay/specs.h"
#include "assay/store.h"
#include "assay/ui_http.h"
#include "assay/worker.h"
#include "client.h"
#include "registry.h"
#include "table.h"

namespace {

namespace co = assay::coordinator;
namespace wk = assay::worker;
namespace fs = std::filesystem;
using assay::Status;

struct LocalOpts {
  std::string spec;
  std::string db = "assay.db";
  std::string work_dir = ".assay-local";
  std::string gpus;        // override, as for `assay worker --gpus`
  int cpus = 0;            // 0: one slot per core
  double lease_ttl = 30;
  bool ui = false;         // serve the dashboard at /ui/ while the sweep runs
};

int fail(const std::string& m) {
  std::cerr << "assay local: " << m << "\n";
  return 1;
}

// Tokens live in the work dir and are reused, so a second `assay local`
// against the same database behaves like the first.
assay::Result<std::pair<std::string, std::string>> local_tokens(const std::string& dir) {
  if (!fs::exists(dir + "/user.token")) ASSAY_RETURN_IF_ERROR(co::init_tokens(dir, false));
  ASSAY_ASSIGN_OR_RETURN(auto user, co::read_token_file(dir + "/user.token"));
  ASSAY_ASSIGN_OR_RETURN(auto worker, co::read_token_file(dir + "/worker.token"));
  return std::make_pair(user, worker);
}

void print_results(const std::string& db, const std::string& sweep) {
  std::string quoted = "'";
  for (char c : sweep) quoted += (c == '\'' ? std::string("''") : std::string(1, c));
  quoted += "'";
  const std::string sql = "SELECT * FROM runs_wide WHERE sweep = " + quoted + " ORDER BY run_id";
  auto r = assay::store::query_readonly(db, sql);
  if (!r.ok()) {
    std::cerr << "assay local: " << r.status().message() << "\n";
    return;
  }
  // Keep it readable: drop bulky columns, min/max companions and columns
  // that are NULL in every row; the SQL printed below brings them all back.
  auto ends_with = [](const std::string& s, const char* suf) {
    const size_t n = std::strlen(suf);
    return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
  };
  std::vector<size_t> keep;
  for (size_t i = 0; i < r->columns.size(); ++i) {
    const std::string& c = r->columns[i];
    if (c == "params_json" || c == "command" || c == "created_at" || c == "started_at" ||
        c == "finished_at" || c == "sweep" || c == "priority" || c == "gpus" ||
        ends_with(c, "_min") || ends_with(c, "_max"))
      continue;
    bool any = false;
    for (const auto& row : r->rows) any = any || !std::holds_alternative<std::monostate>(row[i]);
    if (any) keep.push_back(i);
  }
  // Runs columns first, then at most kMaxMetricCols metric columns.
  constexpr size_t kMaxMetricCols = 8;
  size_t base = 0;
  while (base < keep.size() && !ends_with(r->columns[keep[base]], "_final")) ++base;
  size_t hidden = 0;
  if (keep.size() > base + kMaxMetricCols) {
    hidden = keep.size() - base - kMaxMetricCols;
    keep.resize(base + kMaxMetricCols);
  }
  assay::store::QueryResult shown;
  for (size_t i : keep) shown.columns.push_back(r->columns[i]);
  for (const auto& row : r->rows) {
    std::vector<assay::store::Cell> cells;
    for (size_t i : keep) cells.push_back(row[i]);
    shown.rows.push_back(std::move(cells));
  }
  std::cout << "\nResults (" << db << "):\n";
  assay::cli::print_table(std::cout, shown);
  if (hidden > 0) std::cout << "(" << hidden << " more metric columns; the SQL below shows them all)\n";
  std::cout << "\nSQL: assay query --db " << db << " \"" << sql << "\"\n";
}

int run_local(const LocalOpts& o) {
  auto spec = assay::schemas::load_sweep_spec(o.spec);
  if (!spec.ok()) return fail(spec.status().message());
  std::error_code ec;
  fs::create_directories(o.work_dir, ec);
  if (ec) return fail(o.work_dir + ": " + ec.message());
  auto tokens = local_tokens(o.work_dir);
  if (!tokens.ok()) return fail(tokens.status().message());

  co::Options copts;
  copts.db_path = o.db;
  copts.user_token = tokens->first;
  copts.worker_token = tokens->second;
  copts.lease_ttl_s = o.lease_ttl;
  if (o.ui) co::set_route_hook(assay::ui::coordinator_hook());
  auto coord = co::Coordinator::open(copts);
  if (!coord.ok()) return fail(coord.status().message());

  std::atomic<bool> stop_server{false}, stop_worker{false}, abort_worker{false};
  std::promise<int> port_promise;
  auto port_future = port_promise.get_future();
  co::ServerOptions so;
  so.port = 0;
  so.on_listening = [&](int port) { port_promise.set_value(port); };
  Status server_status;
  std::thread server([&] { server_status = co::serve(**coord, so, &stop_server); });
  if (port_future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    stop_server = true;
    server.join();
    return fail("embedded coordinator did not start: " + server_status.message());
  }
  const int port = port_future.get();
  const std::string url = "http://127.0.0.1:" + std::to_string(port);

  wk::WorkerConfig wc;
  wc.coordinator_url = url;
  wc.token = tokens->second;
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  wc.worker_id = "local";
  wc.host = host;
  if (!o.gpus.empty()) {
    auto g = wk::parse_gpu_override(o.gpus);
    if (!g.ok()) {
      stop_server = true;
      server.join();
      return fail("--gpus: " + g.status().message());
    }
    wc.gpus = *g;
  } else {
    std::string note;
    wc.gpus = wk::discover_gpus(&note);
    wc.gpus_from_nvml = !wc.gpus.empty();
  }
  wc.cpus = o.cpus > 0 ? o.cpus : int(std::max(1u, std::thread::hardware_concurrency()));
  wc.work_dir = o.work_dir;
  wc.lease_wait_s = 1;
  std::ofstream worker_log(o.work_dir + "/worker.log", std::ios::app);
  std::thread worker([&] { (void)wk::run_worker(wc, stop_worker, abort_worker, worker_log); });

  std::cout << "assay local: coordinator " << url << ", worker with " << wc.gpus.size()
            << " GPU(s) and " << wc.cpus << " CPU slot(s); database " << o.db << "\n";
  if (o.ui)
    std::cout << "assay local: dashboard at " << url << "/ui/#token=" << tokens->first
              << " (until the sweep ends)" << std::endl;
  int rc = 0;
  co::HttpClient client(*co::parse_coordinator_url(url), tokens->first);
  auto doc = assay::schemas::load_json_file(o.spec);
  auto res = client.call("POST", "/v1/sweeps", &*doc);
  if (!res.ok()) {
    rc = fail(res.status().with_context(o.spec).message());
  } else {
    const std::string name = (*res)["sweep"]["name"];
    std::cout << ((*res)["created"].get<bool>() ? "submitted" : "resuming") << " sweep " << name
              << ": " << (*res)["runs"].size() << " runs (worker log: " << o.work_dir
              << "/worker.log)\n";
    auto done = assay::cli::wait_for_sweep(client, name, std::cout);
    if (!done.ok()) {
      rc = fail(done.status().message());
    } else {
      print_results(o.db, name);
      const auto& counts = (*done)["counts"];
      int64_t bad = assay::cli::count_of(counts, "failed") + assay::cli::count_of(counts, "cancelled");
      if (bad > 0) {
        std::cerr << "assay local: " << bad << " run(s) did not succeed; see `assay query --db "
                  << o.db << " \"SELECT run_id, failure_reason, exit_code FROM runs WHERE state != 'succeeded'\"`\n";
        rc = 1;
      }
    }
  }
  stop_worker = true;
  worker.join();
  stop_server = true;
  server.join();
  return rc;
}

void add_local(CLI::App& app) {
  auto o = std::make_shared<LocalOpts>();
  auto* l = app.add_subcommand("local", "Run a sweep on this machine: embedded coordinator and worker, no setup");
  l->add_option("spec", o->spec, "Sweep spec JSON file")->required()->check(CLI::ExistingFile);
  l->add_option("--db", o->db, "Results database")->capture_default_str();
  l->add_option("--work-dir", o->work_dir, "Run outputs, spool, tokens and the worker log")
      ->capture_default_str();
  l->add_option("--gpus", o->gpus, "GPU inventory override, as for `assay worker --gpus` (default: NVML)");
  l->add_option("--cpus", o->cpus, "CPU slots for CPU-only runs (default: one per core)");
  l->add_option("--lease-ttl", o->lease_ttl, "Seconds a run's lease lasts without a heartbeat")
      ->capture_default_str();
  l->add_flag("--ui", o->ui, "Serve the web dashboard while the sweep runs (the URL is printed)");
  l->footer(
      "\nThe same sweep file works unchanged with `assay submit` against a shared coordinator.\n"
      "Re-running the same sweep resumes it: finished runs are kept, nothing is redone.\n\n"
      "Example:\n"
      "  assay local examples/sweeps/quick.json\n"
      "  assay query \"SELECT * FROM runs_wide ORDER BY loss_final LIMIT 5\"");
  l->callback([o] { assay::cli::set_exit_code(run_local(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(5, add_local);
