// Coordinator benchmarks on loopback, with the coordinator served in-process
// on its own thread (the same single-threaded server the daemon runs).
//   dispatch:    10,000 trivial runs across 50 simulated workers; runs
//                dispatched per second over the whole wall-clock window
//                (first submit -> last start; the headline) and p50/p99
//                submit->start latency.
//   ingest:      metric points/s from 8 concurrent runs through HTTP into
//                SQLite, next to a raw SQLite bulk insert of the same rows.
//   leaderboard: best final metric per sweep, top 20, over 10,000 runs.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"
#include "assay/store.h"

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

double wall() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

struct Server {
  std::unique_ptr<Coordinator> coord;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::atomic<int> port{0};
  std::string dir;

  // durability: "full" | "normal"; empty = the coordinator's default.
  explicit Server(double ttl = 30, const std::string& durability = "") {
    char tmpl[] = "/tmp/assay_bench_coord_XXXXXX";
    dir = mkdtemp(tmpl);
    Options o;
    if (!durability.empty()) o.durability = durability;
    o.db_path = dir + "/bench.db";
    o.user_token = "user";
    o.worker_token = "worker";
    o.lease_ttl_s = ttl;
    auto c = Coordinator::open(o);
    if (!c.ok()) {
      std::cerr << c.status().to_string() << "\n";
      std::exit(1);
    }
    coord = std::move(c).value();
    thread = std::thread([this] {
      ServerOptions so;
      so.port = 0;
      so.max_connections = 1000;
      so.on_listening = [this](int p) { port = p; };
      auto st = serve(*coord, so, &stop);
      if (!st.ok()) std::cerr << st.to_string() << "\n";
    });
    while (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~Server() {
    stop = true;
    thread.join();
    coord.reset();
    fs::remove_all(dir);
  }
  Endpoint ep() const { return {"127.0.0.1", port.load()}; }
};

Json must(assay::Result<Json> r, const char* what) {
  if (!r.ok()) {
    std::cerr << what << ": " << r.status().to_string() << "\n";
    std::exit(1);
  }
  return *r;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

void bench_dispatch() {
  const int kRuns = 10000, kWorkers = 50, kPerSweep = 100;
  Server srv;
  std::atomic<int> finished{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int wi = 0; wi < kWorkers; ++wi) {
    workers.emplace_back([&, wi] {
      HttpClient c(srv.ep(), "worker", 60);
      std::string id = "sim-" + std::to_string(wi);
      Json reg = {{"worker_id", id}, {"instance", "x"}, {"cpus", 4}};
      must(c.call("POST", "/v1/worker/register", &reg), "register");
      while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      while (finished < kRuns) {
        Json lq = {{"worker_id", id}, {"max_runs", 4}, {"wait_s", 0.2}};
        Json l = must(c.call("POST", "/v1/worker/lease", &lq), "lease");
        for (auto& r : l["runs"]) {
          std::string base = "/v1/worker/runs/" + std::to_string(r["run_id"].get<int64_t>());
          Json s = {{"worker_id", id}, {"attempt", r["attempt"]}, {"pid", 1}};
          must(c.call("POST", base + "/started", &s), "started");
          Json f = {{"worker_id", id}, {"attempt", r["attempt"]}, {"exit_code", 0}};
          must(c.call("POST", base + "/finished", &f), "finished");
          ++finished;
        }
      }
    });
  }
  HttpClient user(srv.ep(), "user", 60);
  double t0 = wall();
  // The same instant on the clock the database's started_at uses.
  const double t0_unix =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  go = true;
  for (int s = 0; s < kRuns / kPerSweep; ++s) {
    Json vals = Json::array();
    for (int i = 0; i < kPerSweep; ++i) vals.push_back(i);
    Json spec = {{"name", "d" + std::to_string(s)}, {"command", "true {x}"},
                 {"space", {{"x", {{"type", "grid"}, {"values", vals}}}}}};
    must(user.call("POST", "/v1/sweeps", &spec), "submit");
  }
  double t_submitted = wall();
  for (auto& t : workers) t.join();
  double t1 = wall();
  Json q = {{"sql", "SELECT started_at - created_at, started_at FROM runs"}, {"max_rows", 20000}};
  Json rows = must(user.call("POST", "/v1/query", &q), "query")["rows"];
  std::vector<double> lat;
  double first = 1e300, last = 0;
  for (auto& r : rows) {
    lat.push_back(r[0].get<double>());
    first = std::min(first, r[1].get<double>());
    last = std::max(last, r[1].get<double>());
  }
  std::printf("dispatch: %d runs, %d workers: submit %.2f s, all finished %.2f s\n", kRuns,
              kWorkers, t_submitted - t0, t1 - t0);
  // Headline: what a user waits for, from the first submit request to the
  // last run started. The rate between the first and the last start leaves
  // out the submit and ramp-up (8-10% higher); it is secondary.
  std::printf("dispatch: runs dispatched/s %.0f (wall clock, submit start -> last start)\n",
              kRuns / std::max(1e-9, last - t0_unix));
  std::printf("dispatch:   secondary: started/s between first and last start %.0f; "
              "submit start -> last finish %.0f/s\n",
              kRuns / std::max(1e-9, last - first), kRuns / (t1 - t0));
  std::printf("dispatch: submit->start latency p50 %.1f ms, p99 %.1f ms\n", 1e3 * pct(lat, 0.5),
              1e3 * pct(lat, 0.99));
}

// durability: as `assay coordinator --durability` (empty: its default).
void bench_ingest(const std::string& durability) {
  const int kRuns = 8, kBatches = 100, kPoints = 2000;  // 8 * 100 * 2000 = 1.6M points
  Server srv(30, durability);
  HttpClient user(srv.ep(), "user", 60);
  Json spec = {{"name", "ingest"}, {"command", "true {x}"},
               {"space", {{"x", {{"type", "grid"}, {"values", {0, 1, 2, 3, 4, 5, 6, 7}}}}}}};
  must(user.call("POST", "/v1/sweeps", &spec), "submit");
  HttpClient wc(srv.ep(), "worker", 60);
  Json reg = {{"worker_id", "ing"}, {"instance", "x"}, {"cpus", 8}};
  must(wc.call("POST", "/v1/worker/register", &reg), "register");
  Json lq = {{"worker_id", "ing"}, {"max_runs", 8}};
  Json l = must(wc.call("POST", "/v1/worker/lease", &lq), "lease");
  std::vector<int64_t> ids;
  for (auto& r : l["runs"]) ids.push_back(r["run_id"]);
  // Bodies are built before timing: the benchmark measures the coordinator.
  std::vector<std::vector<std::string>> bodies(kRuns);
  for (int r = 0; r < kRuns; ++r)
    for (int b = 0; b < kBatches; ++b) {
      Json j = {{"worker_id", "ing"}, {"attempt", 1}, {"batch_seq", b}, {"points", Json::array()}};
      for (int p = 0; p < kPoints; ++p) {
        int64_t step = static_cast<int64_t>(b) * (kPoints / 4) + p / 4;
        static const char* keys[] = {"loss", "acc", "lr", "grad_norm"};
        j["points"].push_back({{"key", keys[p % 4]}, {"step", step}, {"value", 0.001 * p}, {"time", 1.7e9 + step}});
      }
      bodies[r].push_back(j.dump());
    }
  double t0 = wall();
  std::vector<std::thread> th;
  for (int r = 0; r < kRuns; ++r)
    th.emplace_back([&, r] {
      HttpClient c(srv.ep(), "worker", 60);
      std::string url = "/v1/worker/runs/" + std::to_string(ids[r]) + "/metrics";
      for (auto& b : bodies[r]) {
        auto rep = c.request("POST", url, b);
        if (!rep.ok() || rep->status != 200) {
          std::cerr << "ingest: " << (rep.ok() ? rep->body : rep.status().to_string()) << "\n";
          std::exit(1);
        }
      }
    });
  for (auto& t : th) t.join();
  double http_s = wall() - t0;
  double total = double(kRuns) * kBatches * kPoints;

  // Raw SQLite: the same rows, prepared INSERT, one transaction, same schema.
  std::string raw_path = srv.dir + "/raw.db";
  {
    auto st = assay::store::Store::open(raw_path);
    if (!st.ok()) std::exit(1);
    auto& s = **st;
    for (int r = 0; r < kRuns; ++r) {
      assay::store::NewRun nr;
      nr.command = "true";
      (void)s.insert_run(nr, "bench");
    }
  }
  sqlite3* db = nullptr;
  sqlite3_open(raw_path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, nullptr);
  sqlite3_exec(db, "INSERT OR IGNORE INTO metric_keys(id,name) VALUES(1,'loss'),(2,'acc'),(3,'lr'),(4,'grad_norm')",
               nullptr, nullptr, nullptr);
  double t1 = wall();
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO metrics(run_id,attempt,key_id,step,value,wall_time) "
                     "VALUES(?,1,?,?,?,?) "
                     "ON CONFLICT DO UPDATE SET value=excluded.value, wall_time=excluded.wall_time",
                     -1, &ins, nullptr);
  for (int r = 0; r < kRuns; ++r)
    for (int b = 0; b < kBatches; ++b)
      for (int p = 0; p < kPoints; ++p) {
        int64_t step = static_cast<int64_t>(b) * (kPoints / 4) + p / 4;
        sqlite3_bind_int64(ins, 1, r + 1);
        sqlite3_bind_int64(ins, 2, p % 4 + 1);
        sqlite3_bind_int64(ins, 3, step);
        sqlite3_bind_double(ins, 4, 0.001 * p);
        sqlite3_bind_double(ins, 5, 1.7e9 + step);
        sqlite3_step(ins);
        sqlite3_reset(ins);
      }
  sqlite3_finalize(ins);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  double raw_s = wall() - t1;
  sqlite3_close(db);
  Json q = {{"sql", "SELECT COUNT(*) FROM metrics"}};
  int64_t stored = must(user.call("POST", "/v1/query", &q), "count")["rows"][0][0];
  Json health = must(user.call("GET", "/v1/health"), "health");
  std::printf("ingest: %.0f points (%d runs x %d batches x %d) via HTTP in %.2f s: %.0f points/s; "
              "stored %lld; durability %s\n",
              total, kRuns, kBatches, kPoints, http_s, total / http_s,
              static_cast<long long>(stored), health.value("durability", "normal").c_str());
  std::printf("ingest: raw SQLite bulk insert %.2f s: %.0f points/s; HTTP/raw = %.2f\n", raw_s,
              total / raw_s, raw_s / http_s);
}

void bench_leaderboard() {
  const int kSweeps = 100, kRunsPer = 100, kSteps = 10;
  char tmpl[] = "/tmp/assay_bench_lb_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/lb.db";
  {
    auto st = assay::store::Store::open(path);
    if (!st.ok()) std::exit(1);
    auto& s = **st;
    (void)s.transaction([&]() -> assay::Status {
      for (int sw = 0; sw < kSweeps; ++sw) {
        auto sid = s.insert_sweep("lb" + std::to_string(sw), "{}", std::to_string(sw));
        std::vector<assay::store::MetricPoint> pts;
        for (int r = 0; r < kRunsPer; ++r) {
          assay::store::NewRun nr;
          nr.sweep_id = *sid;
          nr.command = "true";
          nr.params_json = Json{{"lr", 0.001 * (r + 1)}}.dump();
          auto rid = s.insert_run(nr, "bench");
          for (int k = 0; k < kSteps; ++k)
            pts.push_back({*rid, "loss", k, 1.0 / (k + 1) + 0.0001 * ((sw * 7919 + r * 104729) % 1000), 0});
        }
        ASSAY_RETURN_IF_ERROR(s.put_metrics(pts));
      }
      return assay::Status::Ok();
    });
  }
  // SQLite's bare-column rule: with MAX(step), `value` comes from the row
  // holding the max, so the final value per run is one pass over the index.
  const std::string sql =
      "WITH final AS ("
      " SELECT m.run_id, m.value, MAX(m.step) AS last_step FROM metrics m"
      " WHERE m.key_id = (SELECT id FROM metric_keys WHERE name = 'loss')"
      " GROUP BY m.run_id)"
      " SELECT s.name AS sweep, MIN(f.value) AS best, COUNT(*) AS runs"
      " FROM final f JOIN runs r ON r.id = f.run_id JOIN sweeps s ON s.id = r.sweep_id"
      " GROUP BY s.id ORDER BY best LIMIT 20";
  std::vector<double> times;
  size_t rows = 0;
  for (int i = 0; i < 5; ++i) {
    double t0 = wall();
    auto r = assay::store::query_readonly(path, sql);
    times.push_back(wall() - t0);
    if (!r.ok()) {
      std::cerr << r.status().to_string() << "\n";
      std::exit(1);
    }
    rows = r->rows.size();
  }
  std::printf("leaderboard: %d runs, %d points: top-%zu query median %.1f ms (min %.1f ms)\n",
              kSweeps * kRunsPer, kSweeps * kRunsPer * kSteps, rows, 1e3 * pct(times, 0.5),
              1e3 * pct(times, 0.0));
  fs::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = argc > 1 ? argv[1] : "all";
  std::printf("machine: %u hardware threads\n", std::thread::hardware_concurrency());
  if (which == "dispatch" || which == "all") bench_dispatch();
  // ingest [full|normal]: the coordinator's durability mode.
  if (which == "ingest" || which == "all") bench_ingest(argc > 2 ? argv[2] : "");
  if (which == "leaderboard" || which == "all") bench_leaderboard();
  return 0;
}
