// Leaderboard benchmark: a database of 10,000 runs x 1,000 points (10M
// points, written through Store::put_metrics, the coordinator's ingest path),
// then a top-20 leaderboard by final metric value
//   - as SQL alone, in-process (store::query_readonly: open a read-only
//     connection, prepare, run; what /v1/query does per request), and
//   - through `assay query` as a process (wall clock of the whole command,
//     start-up included),
// each with run_metric_summary (migration 0007: the per-attempt summary) and
// with the same view as migration 0006 defined it (a scan of every point of
// the curve), on the same database in the same run. Also the database size
// per million points.
//
// Run: build/bench/coordinator/bench_leaderboard [--runs N] [--points P]
//        [--assay PATH] [--assay-before PATH] [--keep DIR] [--no-scan]
// --assay-before times another binary (e.g. a build from before the summary)
// with the 0006 SQL too.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/store.h"

extern char** environ;
namespace fs = std::filesystem;
namespace st = assay::store;

namespace {

double wall() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// run_metric_summary as migration 0006 defined it: every point of the curve.
const std::string kView6 =
    "(SELECT c.run_id, k.name AS metric, COUNT(*) AS points, MAX(c.step) AS last_step,"
    " (SELECT c2.value FROM metric_curve c2 WHERE c2.run_id = c.run_id AND c2.key_id = c.key_id"
    "   ORDER BY c2.step DESC LIMIT 1) AS final,"
    " MIN(c.value) AS min, MAX(c.value) AS max, r.attempt AS attempt"
    " FROM metric_curve c JOIN runs r ON r.id = c.run_id JOIN metric_keys k ON k.id = c.key_id"
    " GROUP BY c.run_id, c.key_id)";

// The same as migration 0005 defined it: every point of the current attempt
// (no resume chain); one pass, what issue 16 measured at 2.1 s.
const std::string kView5 =
    "(SELECT m.run_id, k.name AS metric, COUNT(*) AS points, MAX(m.step) AS last_step,"
    " (SELECT m2.value FROM metrics m2 WHERE m2.run_id = m.run_id AND m2.attempt = m.attempt"
    "   AND m2.key_id = m.key_id ORDER BY m2.step DESC LIMIT 1) AS final,"
    " MIN(m.value) AS min, MAX(m.value) AS max, m.attempt AS attempt"
    " FROM runs r JOIN metrics m ON m.run_id = r.id AND m.attempt = r.attempt"
    " JOIN metric_keys k ON k.id = m.key_id GROUP BY m.run_id, m.key_id)";

std::string leaderboard(const std::string& from) {
  return "SELECT run_id, final FROM " + from +
         " WHERE metric = 'loss' ORDER BY final LIMIT 20";
}

void die(const std::string& what) {
  std::cerr << "bench_leaderboard: " << what << "\n";
  std::exit(1);
}

// 100 sweeps of runs/100 runs, each with `points` steps of one metric whose
// final value differs per run; one transaction per sweep.
void build(const std::string& path, int runs, int points) {
  auto opened = st::Store::open(path);
  if (!opened.ok()) die(opened.status().to_string());
  auto& s = **opened;
  const int sweeps = std::max(1, runs / 100);
  for (int sw = 0; sw < sweeps; ++sw) {
    assay::Status tx = s.transaction([&]() -> assay::Status {
      ASSAY_ASSIGN_OR_RETURN(int64_t sid, s.insert_sweep("lb" + std::to_string(sw), "{}",
                                                          std::to_string(sw)));
      std::vector<st::MetricPoint> pts(static_cast<size_t>(points));
      for (int r = 0; r < runs / sweeps; ++r) {
        st::NewRun nr;
        nr.sweep_id = sid;
        nr.command = "true";
        nr.params_json = nlohmann::json{{"lr", 0.001 * (r + 1)}, {"seed", sw}}.dump();
        ASSAY_ASSIGN_OR_RETURN(int64_t rid, s.insert_run(nr, "bench"));
        const double offset = 1e-4 * double((sw * 7919 + r * 104729) % 1000);
        for (int k = 0; k < points; ++k)
          pts[size_t(k)] = {rid, "loss", k, 1.0 / (k + 1) + offset, 1.7e9 + k};
        ASSAY_RETURN_IF_ERROR(s.put_metrics(pts));
      }
      return assay::Status::Ok();
    });
    if (!tx.ok()) die(tx.to_string());
  }
}

// Median and min of n timings of the SQL in-process, and its row count.
void time_sql(const std::string& label, const std::string& path, const std::string& sql, int n) {
  std::vector<double> t;
  size_t rows = 0;
  for (int i = 0; i < n; ++i) {
    const double t0 = wall();
    auto r = st::query_readonly(path, sql);
    t.push_back(wall() - t0);
    if (!r.ok()) die(label + ": " + r.status().to_string());
    rows = r->rows.size();
  }
  std::printf("leaderboard: SQL in-process, %-28s %zu rows: median %8.1f ms (min %.1f ms)\n",
              label.c_str(), rows, 1e3 * median(t), 1e3 * *std::min_element(t.begin(), t.end()));
}

// Wall clock of `exe query --db path sql` with its output to /dev/null.
void time_process(const std::string& label, const std::string& exe, const std::string& path,
                  const std::string& sql, int n) {
  std::vector<double> t;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> args{exe, "query", "--db", path, sql};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    const double t0 = wall();
    pid_t pid = -1;
    if (posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ) != 0)
      die("cannot start " + exe);
    int status = 0;
    waitpid(pid, &status, 0);
    t.push_back(wall() - t0);
    posix_spawn_file_actions_destroy(&fa);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(label + ": " + exe + " query failed");
  }
  std::printf("leaderboard: `assay query` process, %-23s median %8.1f ms (min %.1f ms)\n",
              label.c_str(), 1e3 * median(t), 1e3 * *std::min_element(t.begin(), t.end()));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress shows as it comes
  int runs = 10000, points = 1000;
  std::string assay = ASSAY_EXE, before, keep;
  bool scan = true;
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--no-scan") {  // skip the 0006 scan (minutes at 10M points)
      scan = false;
      --i;
      continue;
    }
    if (i + 1 >= argc) die("option " + a + " needs a value");
    if (a == "--runs") runs = std::stoi(argv[i + 1]);
    else if (a == "--points") points = std::stoi(argv[i + 1]);
    else if (a == "--assay") assay = argv[i + 1];
    else if (a == "--assay-before") before = argv[i + 1];
    else if (a == "--keep") keep = argv[i + 1];
    else die("unknown option " + a);
  }
  std::string dir = keep;
  if (dir.empty()) {
    char tmpl[] = "/tmp/assay_bench_lb_XXXXXX";
    dir = mkdtemp(tmpl);
  }
  fs::create_directories(dir);
  const std::string path = dir + "/lb.db";
  const double total = double(runs) * points;
  if (!fs::exists(path)) {
    const double t0 = wall();
    build(path, runs, points);
    const double s = wall() - t0;
    std::printf("leaderboard: built %d runs x %d points (%.0f points) through put_metrics in "
                "%.1f s (%.0f points/s)\n", runs, points, total, s, total / s);
  }
  {
    // Checkpoint the WAL into the file so its size is the database's.
    auto s = st::Store::open(path);
    if (!s.ok()) die(s.status().to_string());
  }
  std::error_code ec;
  const double mb = double(fs::file_size(path)) / 1e6;
  const auto wal = fs::file_size(path + "-wal", ec);
  std::printf("leaderboard: database %.1f MB (+ WAL %.1f MB) = %.1f MB per million points\n", mb,
              ec ? 0.0 : double(wal) / 1e6, mb / (total / 1e6));

  const std::string now_sql = leaderboard("run_metric_summary");
  const std::string old_sql = leaderboard(kView6);
  const std::string v5_sql = leaderboard(kView5);
  const std::string wide_sql =
      "SELECT run_id, lr, loss_final FROM runs_wide ORDER BY loss_final LIMIT 20";
  time_sql("run_metric_summary (0007)", path, now_sql, 5);
  time_sql("runs_wide (0007)", path, wide_sql, 5);
  // One timing each. The 0006 view's `final` is a subquery over metric_curve,
  // which SQLite re-derives (every run's attempt chain joined to every
  // point) once per run: runs x points, hours at 10M points (--no-scan).
  time_sql("0005 view (scan)", path, v5_sql, 1);
  if (scan) time_sql("0006 view (scan)", path, old_sql, 1);
  time_process("run_metric_summary (0007)", assay, path, now_sql, 5);
  time_process("SELECT 1", assay, path, "SELECT 1", 5);
  if (!before.empty()) {
    time_process("before: 0005 SQL", before, path, v5_sql, 1);
    if (scan) time_process("before: 0006 SQL", before, path, old_sql, 1);
    time_process("before: SELECT 1", before, path, "SELECT 1", 5);
  }
  if (keep.empty()) fs::remove_all(dir);
  return 0;
}
