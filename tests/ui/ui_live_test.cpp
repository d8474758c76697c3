// The dashboard's JSON endpoints over real HTTP: the change feed pages wait
// on (/v1/ui/changes) in a real coordinator fed by worker calls and in
// `assay ui`'s server over a database written meanwhile, the log tail, a
// zoomed series range, sweep counts with the pruned state and the analysis
// view. The browser side is ui_browser_test.py.
#include <utility>

#include <gtest/gtest.h>

#include <limits>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <filesystem>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "assay/coordinator_routes.h"
#include "assay/http_client.h"
#include "assay/store.h"
#include "assay/ui_http.h"
#include "support/temp_dir.h"

namespace {

using Json = nlohmann::json;
namespace co = assay::coordinator;
using assay::testing::TempDir;
using Clock = std::chrono::steady_clock;

const std::string kUser(64, 'a'), kWorker(64, 'b');

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Json get(int port, const std::string& target, double timeout_s = 30) {
  assay::http::Client c({"127.0.0.1", port}, kUser, timeout_s);
  auto r = c.request("GET", target);
  if (!r.ok()) return Json{{"transport", r.status().message()}};
  Json j = Json::parse(r->body, nullptr, false);
  j["http_status"] = r->status;
  return j;
}

Json post(int port, const std::string& target, const Json& body, const std::string& token = kWorker) {
  assay::http::Client c({"127.0.0.1", port}, token, 30);
  auto r = c.request("POST", target, body.dump());
  EXPECT_TRUE(r.ok()) << target;
  if (!r.ok()) return Json();
  EXPECT_LT(r->status, 300) << target << ": " << r->body;
  return Json::parse(r->body, nullptr, false);
}

// Executes SQL on the file as another process would (its own connection).
void exec_sql(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "") << " in " << sql;
  sqlite3_free(err);
  sqlite3_close(h);
}

// A coordinator with the dashboard's route hook, served on a free port.
struct CoordinatorServer {
  TempDir tmp{"ui-live"};
  std::unique_ptr<co::Coordinator> coord;
  std::atomic<bool> stop{false};
  std::atomic<int> port{0};
  std::thread thread;

  explicit CoordinatorServer(double lease_ttl_s = 30) {
    co::set_route_hook(assay::ui::coordinator_hook());
    co::Options o;
    o.db_path = tmp.file("c.db");
    o.user_token = kUser;
    o.worker_token = kWorker;
    o.lease_ttl_s = lease_ttl_s;
    auto c = co::Coordinator::open(o);
    EXPECT_TRUE(c.ok()) << c.status().message();
    coord = std::move(*c);
    co::ServerOptions so;
    so.port = 0;
    so.on_listening = [this](int p) { port = p; };
    thread = std::thread([this, so] { (void)co::serve(*coord, so, &stop); });
    while (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~CoordinatorServer() {
    stop = true;
    thread.join();
    co::set_route_hook({});
  }
};

TEST(UiLive, CoordinatorAnswersAParkedPageWhenItsRunChanges) {
  CoordinatorServer s;
  const int port = s.port;
  Json sweep = {{"name", "live"}, {"command", "true"}, {"resources", {{"cpus", 1}}},
                {"space", {{"x", {{"type", "grid"}, {"values", {1, 2}}}}}}};
  post(port, "/v1/sweeps", sweep, kUser);
  post(port, "/v1/worker/register",
       {{"worker_id", "w"}, {"instance", "i"}, {"host", "h"}, {"cpus", 2}, {"gpus", Json::array()}});
  Json leased = post(port, "/v1/worker/lease", {{"worker_id", "w"}, {"max_runs", 2}})["runs"];
  ASSERT_EQ(leased.size(), 2u);
  const int64_t a = leased[0]["run_id"], b = leased[1]["run_id"];
  for (int64_t r : {a, b})
    post(port, "/v1/worker/runs/" + std::to_string(r) + "/started",
         {{"worker_id", "w"}, {"attempt", 1}, {"pid", 1}});

  const std::string scope = "/v1/ui/changes?run=" + std::to_string(a);
  Json first = get(port, scope);
  ASSERT_EQ(first["http_status"], 200) << first.dump();
  const std::string cur = first["cursor"];
  auto t0 = Clock::now();
  auto parked = std::async(std::launch::async, [&] {
    return get(port, scope + "&since=" + cur + "&wait=10&poll=p1");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Another run's point: this page's request stays parked.
  post(port, "/v1/worker/runs/" + std::to_string(b) + "/metrics",
       {{"worker_id", "w"}, {"attempt", 1}, {"batch_seq", 0},
        {"points", {{{"key", "loss"}, {"step", 1}, {"value", 0.5}}}}});
  EXPECT_EQ(parked.wait_for(std::chrono::milliseconds(400)), std::future_status::timeout)
      << "a change to another run answered this run's page";
  auto posted = Clock::now();
  post(port, "/v1/worker/runs/" + std::to_string(a) + "/metrics",
       {{"worker_id", "w"}, {"attempt", 1}, {"batch_seq", 0},
        {"points", {{{"key", "loss"}, {"step", 1}, {"value", 0.25}}}}});
  ASSERT_EQ(parked.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  Json got = parked.get();
  EXPECT_LT(since(posted), 1.9);  // pages promise 2 s
  EXPECT_GT(since(t0), 0.6);
  EXPECT_EQ(got["changed"], true) << got.dump();
  EXPECT_NE(got["cursor"], cur);
  // What the page reads next is committed.
  Json series = get(port, "/v1/ui/runs/" + std::to_string(a) + "/series?key=loss");
  ASSERT_EQ(series["values"].size(), 1u) << series.dump();
  EXPECT_EQ(series["values"][0], 0.25);

  // Nothing new: the wait runs out and the cursor stays.
  t0 = Clock::now();
  Json idle = get(port, scope + "&since=" + got["cursor"].get<std::string>() + "&wait=0.5&poll=p2");
  EXPECT_EQ(idle["changed"], false) << idle.dump();
  EXPECT_GE(since(t0), 0.45);
  // A worker's log upload moves its run.
  auto log_wait = std::async(std::launch::async, [&] {
    return get(port, scope + "&since=" + got["cursor"].get<std::string>() + "&wait=10&poll=p3");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  assay::http::Client wc({"127.0.0.1", port}, kWorker, 10);
  auto up = wc.request("POST", "/v1/worker/runs/" + std::to_string(a) +
                                   "/logs?worker_id=w&attempt=1&stream=stdout&offset=0",
                       "step 1\n", "application/octet-stream");
  ASSERT_TRUE(up.ok());
  ASSERT_EQ(log_wait.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_EQ(log_wait.get()["changed"], true);
  Json logs = get(port, "/v1/ui/runs/" + std::to_string(a) + "/logs");
  EXPECT_EQ(logs["stdout"]["text"], "step 1\n") << logs.dump();

  // Errors: no token, a bad run id, a bad wait.
  assay::http::Client anon({"127.0.0.1", port}, "", 10);
  auto r401 = anon.request("GET", scope);
  ASSERT_TRUE(r401.ok());
  EXPECT_EQ(r401->status, 401);
  EXPECT_EQ(get(port, "/v1/ui/changes?run=x")["http_status"], 400);
  EXPECT_EQ(get(port, scope + "&wait=-1")["http_status"], 400);
}

// A change no request explains: the coordinator's own timer expires the
// lease of a worker that went silent and requeues its run.
TEST(UiLive, CoordinatorAnswersWhenItsTimerChangesARun) {
  CoordinatorServer s(/*lease_ttl_s=*/1.0);
  const int port = s.port;
  Json sweep = {{"name", "t"}, {"command", "true"}, {"resources", {{"cpus", 1}}},
                {"max_attempts", 3}, {"space", {{"x", {{"type", "grid"}, {"values", {1}}}}}}};
  post(port, "/v1/sweeps", sweep, kUser);
  post(port, "/v1/worker/register",
       {{"worker_id", "w"}, {"instance", "i"}, {"host", "h"}, {"cpus", 1}, {"gpus", Json::array()}});
  Json leased = post(port, "/v1/worker/lease", {{"worker_id", "w"}, {"max_runs", 1}})["runs"];
  ASSERT_EQ(leased.size(), 1u);
  const std::string run = std::to_string(leased[0]["run_id"].get<int64_t>());
  post(port, "/v1/worker/runs/" + run + "/started", {{"worker_id", "w"}, {"attempt", 1}, {"pid", 1}});
  const std::string scope = "/v1/ui/changes?run=" + run;
  const std::string cur = get(port, scope)["cursor"];
  auto t0 = Clock::now();
  Json got = get(port, scope + "&since=" + cur + "&wait=10");  // no heartbeat: the lease runs out
  EXPECT_EQ(got["changed"], true) << got.dump();
  EXPECT_LT(since(t0), 5.0);
  Json detail = get(port, "/v1/ui/runs/" + run);
  EXPECT_EQ(detail["run"]["state"], "queued") << detail.dump().substr(0, 400);
  EXPECT_EQ(detail["run"]["attempt"], 2);
}

// `assay ui`'s server over a database file another connection writes.
struct UiServer {
  TempDir tmp{"ui-serve"};
  std::string db = tmp.file("r.db");
  std::atomic<bool> stop{false};
  std::atomic<int> port{0};
  std::thread thread;
  assay::ui::HttpConfig cfg;

  UiServer() {
    auto st = assay::store::Store::open(db);
    EXPECT_TRUE(st.ok()) << st.status().message();
    st->reset();
    exec_sql(db,
             "INSERT INTO sweeps(name, spec_json, content_hash, created_at) VALUES ('s', '{}', 'h', 1);"
             "INSERT INTO metric_keys(name) VALUES ('loss');"
             "INSERT INTO runs(sweep_id, name, spec_json, params_json, command, state, created_at) VALUES "
             "(1, 'r1', '{}', '{\"lr\": 0.1, \"opt\": \"adam\"}', 'x', 'succeeded', 1),"
             "(1, 'r2', '{}', '{\"lr\": 0.2, \"opt\": \"sgd\"}', 'x', 'running', 1),"
             "(1, 'r3', '{}', '{\"lr\": 0.3, \"opt\": \"sgd\"}', 'x', 'succeeded', 1);"
             "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES "
             "(1, 1, 1, 10, 0.5, 100), (2, 1, 1, 10, 0.4, 100), (3, 1, 1, 10, 0.7, 100);");
    cfg.db_path = db;
    cfg.user_token = kUser;
    co::ServerOptions so;
    so.port = 0;
    so.on_listening = [this](int p) { port = p; };
    thread = std::thread([this, so] { (void)assay::ui::serve(cfg, so, &stop); });
    while (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~UiServer() {
    stop = true;
    thread.join();
  }
};

TEST(UiLive, UiServerSeesAnotherProcessWriteTheDatabaseAndLogs) {
  UiServer s;
  const int port = s.port;
  const std::string scope = "/v1/ui/changes?run=1";
  Json first = get(port, scope);
  ASSERT_EQ(first["http_status"], 200) << first.dump();
  const std::string cur = first["cursor"];
  Json idle = get(port, scope + "&since=" + cur + "&wait=0.5");
  EXPECT_EQ(idle["changed"], false) << idle.dump();
  auto parked = std::async(std::launch::async, [&] { return get(port, scope + "&since=" + cur + "&wait=10"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  // A point of another run does not move run 1.
  exec_sql(s.db, "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES (2, 1, 1, 11, 0.3, 101)");
  EXPECT_EQ(parked.wait_for(std::chrono::milliseconds(600)), std::future_status::timeout);
  auto written = Clock::now();
  exec_sql(s.db, "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES (1, 1, 1, 11, 0.45, 101)");
  ASSERT_EQ(parked.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_LT(since(written), 1.9);  // pages promise 2 s
  Json got = parked.get();
  EXPECT_EQ(got["changed"], true);
  // A log line appended to the run's file.
  auto logged = std::async(std::launch::async, [&] {
    return get(port, scope + "&since=" + got["cursor"].get<std::string>() + "&wait=10");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::filesystem::create_directories(s.db + ".logs/1");
  // "h\xc3\xa9" then a lone lead byte: the cut character is left for later.
  std::ofstream(s.db + ".logs/1/1.stdout.log", std::ios::binary) << "line h\xc3\xa9\n\xc3";
  ASSERT_EQ(logged.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_EQ(logged.get()["changed"], true);
  Json logs = get(port, "/v1/ui/runs/1/logs");
  EXPECT_EQ(logs["stdout"]["text"], "line h\xc3\xa9\n") << logs.dump();
  EXPECT_EQ(logs["stdout"]["next_offset"], 9);
  EXPECT_EQ(logs["stdout"]["size"], 10);
  EXPECT_EQ(logs["stderr"]["size"], 0);
  Json more = get(port, "/v1/ui/runs/1/logs?stdout=9&stderr=0");
  EXPECT_EQ(more["stdout"]["text"], "") << more.dump();
  EXPECT_EQ(get(port, "/v1/ui/runs/1/logs?stdout=-3")["http_status"], 400);
}

TEST(UiLive, SeriesRangeSweepCountsAndAnalysis) {
  UiServer s;
  const int port = s.port;
  // 10,000 steps: whole, bucketed; a 300-step range: every point.
  std::string sql = "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES ";
  for (int i = 0; i < 10000; ++i)
    sql += (i ? "," : "") + std::string("(3, 1, 1, ") + std::to_string(100 + i) + ", " +
           std::to_string(i == 5000 ? 99.0 : 1.0) + ", " + std::to_string(1000 + i) + ")";
  exec_sql(s.db, sql);
  Json whole = get(port, "/v1/ui/runs/3/series?key=loss");
  EXPECT_EQ(whole["downsampled"], true);
  EXPECT_TRUE(whole["times"].is_null()) << "wall times only when asked";
  Json zoom = get(port, "/v1/ui/runs/3/series?key=loss&from=4900&to=5199&times=1");
  EXPECT_EQ(zoom["downsampled"], false) << zoom.dump().substr(0, 300);
  EXPECT_EQ(zoom["points"], 300);
  EXPECT_EQ(zoom["first_step"], 4900);
  EXPECT_EQ(zoom["steps"][0], 4900);
  EXPECT_EQ(zoom["times"][0], 1000 + 4800);
  EXPECT_EQ(zoom["range"], (Json{{"from", 4900}, {"to", 5199}}));
  EXPECT_EQ(get(port, "/v1/ui/runs/3/series?key=loss&from=x")["http_status"], 400);
  // A database written by other means may hold steps across all of int64:
  // the whole-run view still buckets them (no overflow) into <= 2,000 points.
  exec_sql(s.db, "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) VALUES "
                 "(3, 1, 1, -9223372036854775808, 5.0, 0), (3, 1, 1, 9223372036854775807, 6.0, 0)");
  Json wide = get(port, "/v1/ui/runs/3/series?key=loss");
  EXPECT_EQ(wide["downsampled"], true) << wide.dump().substr(0, 300);
  EXPECT_EQ(wide["first_step"], std::numeric_limits<int64_t>::min());
  EXPECT_EQ(wide["last_step"], std::numeric_limits<int64_t>::max());
  EXPECT_LE(wide["steps"].size(), 2000u);
  exec_sql(s.db, "DELETE FROM metrics WHERE run_id = 3 AND (step < 0 OR step > 1000000)");

  exec_sql(s.db, "UPDATE runs SET state = 'pruned' WHERE id = 3");
  Json sw = get(port, "/v1/ui/sweeps?metric=loss&mode=min");
  ASSERT_EQ(sw["sweeps"].size(), 1u) << sw.dump();
  const Json& one = sw["sweeps"][0];
  EXPECT_EQ(one["counts"], (Json{{"pruned", 1}, {"running", 1}, {"succeeded", 1}}));
  EXPECT_EQ(one["pruned"], 1);
  EXPECT_EQ(one["failed"], 0);
  EXPECT_EQ(one["best"]["run_id"], 2) << one.dump();  // 0.4, the lowest final loss
  EXPECT_EQ(get(port, "/v1/ui/sweeps?metric=loss&mode=max")["sweeps"][0]["best"]["run_id"], 3);
  EXPECT_EQ(get(port, "/v1/ui/sweeps?metric=loss&mode=avg")["http_status"], 400);

  Json an = get(port, "/v1/ui/analysis?sweep=s&metric=loss");
  ASSERT_EQ(an["runs"].size(), 3u) << an.dump();
  EXPECT_EQ(an["params"], (Json::array({{{"name", "lr"}, {"numeric", true}}, {{"name", "opt"}, {"numeric", false}}})));
  EXPECT_EQ(an["runs"][0]["value"], 0.5);
  EXPECT_EQ(an["runs"][2]["value"], 1.0);  // its last step
  EXPECT_EQ(an["runs"][2]["state"], "pruned");
}

// 257 requests park at once: exactly one is refused (503, at once), the
// others answer when their wait runs out.
void expect_parked_limit(int port, const std::string& cursor_target) {
  const std::string cur = get(port, cursor_target)["cursor"];
  std::vector<std::future<std::pair<Json, double>>> parked;
  for (int i = 0; i < 257; ++i) {
    if (i == 256) std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    parked.push_back(std::async(std::launch::async, [&, i] {
      auto t0 = Clock::now();
      Json r = get(port, cursor_target + "&since=" + cur + "&wait=5&poll=" + std::to_string(i));
      return std::make_pair(r, since(t0));
    }));
  }
  int refused = 0, waited = 0;
  for (auto& f : parked) {
    auto [r, secs] = f.get();
    if (r["http_status"] == 503) {
      ++refused;
      EXPECT_LT(secs, 2.0) << "a refusal waited";
    } else if (r["changed"] == false) {
      ++waited;
    }
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(waited, 256);
}

TEST(UiLive, AtMost256PagesWaitAtOnce) {
  {
    CoordinatorServer s;
    expect_parked_limit(s.port, "/v1/ui/changes?run=1");
  }
  UiServer u;
  expect_parked_limit(u.port, "/v1/ui/changes?run=1");
}

}  // namespace
