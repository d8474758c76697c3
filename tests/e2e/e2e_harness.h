// End-to-end harness: the real `assay` binary as coordinator and workers on
// 127.0.0.1, a libcurl client for the user API, and read-only SQLite checks
// on the coordinator's database file.
#pragma once

#include <curl/curl.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "assay/worker_process.h"

namespace e2e {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// Polls `pred` every 50 ms until it holds or `limit` passes.
inline bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

// A daemon started through the shell with `exec`, so the pid is the daemon's.
class Daemon {
 public:
  Daemon(const fs::path& dir, const std::string& name, const std::string& args) : log_(dir / name) {
    assay::worker::LaunchSpec s;
    s.command = "exec '" + std::string(ASSAY_EXE) + "' " + args;
    s.stdout_path = log_.string() + ".out";
    s.stderr_path = log_.string() + ".err";
    s.metrics_pipe = false;
    auto p = assay::worker::Process::spawn(s);
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (p.ok()) proc_ = std::move(p).value();
  }
  ~Daemon() { stop(); }
  void kill9() {
    if (proc_) {
      proc_->signal_group(SIGKILL);
      proc_->wait_finished(5s);
      proc_.reset();
    }
  }
  // SIGTERM (drain), then SIGKILL if it lingers.
  void stop() {
    if (!proc_) return;
    kill(proc_->pid(), SIGTERM);
    if (!proc_->wait_finished(3s)) kill(proc_->pid(), SIGTERM);  // second: abandon runs
    proc_->wait_finished(3s);
    proc_.reset();
  }
  void signal(int sig) {
    if (proc_) kill(proc_->pid(), sig);
  }
  bool alive() {
    if (!proc_) return false;
    proc_->tick();
    return !proc_->leader_status().has_value();
  }
  std::string logs() const { return slurp(log_.string() + ".out") + slurp(log_.string() + ".err"); }

 private:
  fs::path log_;
  std::unique_ptr<assay::worker::Process> proc_;
};

struct Reply {
  long status = 0;
  std::string body;
  Json json() const { return Json::parse(body, nullptr, false); }
};

inline size_t on_body(char* p, size_t s, size_t n, void* u) {
  static_cast<std::string*>(u)->append(p, s * n);
  return s * n;
}

inline Reply http(const std::string& method, const std::string& url, const std::string& token,
                  const std::string& body = "") {
  Reply r;
  CURL* c = curl_easy_init();
  curl_slist* h = nullptr;
  std::string auth = "Authorization: Bearer " + token;
  h = curl_slist_append(h, auth.c_str());
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return r;
}

// Read-only queries on the coordinator's database (WAL: safe while it runs).
class Db {
 public:
  explicit Db(const fs::path& path) {
    sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Db() { sqlite3_close(db_); }
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    std::vector<std::vector<std::string>> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        auto* t = sqlite3_column_text(st, i);
        row.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
      out.push_back(std::move(row));
    }
    sqlite3_finalize(st);
    return out;
  }
  int64_t scalar(const std::string& sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() || r[0][0] == "NULL" ? -1 : std::stoll(r[0][0]);
  }

 private:
  sqlite3* db_ = nullptr;
};

// One coordinator (restartable on the same port and database) plus workers.
class Cluster {
 public:
  explicit Cluster(const std::string& name, double lease_ttl_s) : ttl_(lease_ttl_s) {
    dir_ = fs::temp_directory_path() / ("assay-e2e-" + std::to_string(getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::string cmd = "'" + std::string(ASSAY_EXE) + "' coordinator init --dir '" + dir_.string() +
                      "' > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    user_token_ = trim(slurp(dir_ / "user.token"));
    EXPECT_FALSE(user_token_.empty());
    write_trainers();
  }
  ~Cluster() {
    workers_.clear();
    coord_.reset();
    if (!::testing::Test::HasFailure()) fs::remove_all(dir_);
  }

  // Starts (or restarts, on the same port) the coordinator.
  bool start_coordinator() {
    fs::remove(dir_ / "port");
    std::string listen = "127.0.0.1:" + std::to_string(port_);
    coord_ = std::make_unique<Daemon>(
        dir_, "coordinator" + std::to_string(++coord_starts_),
        "coordinator --db '" + db_path().string() + "' --token-dir '" + dir_.string() +
            "' --listen " + listen + " --port-file '" + (dir_ / "port").string() +
            "' --lease-ttl " + std::to_string(ttl_));
    bool up = wait_for([&] { return fs::exists(dir_ / "port"); }, 15s);
    if (!up) {
      ADD_FAILURE() << "coordinator did not start: " << coord_->logs();
      return false;
    }
    port_ = std::stoi(slurp(dir_ / "port"));
    return true;
  }
  void kill_coordinator() { coord_->kill9(); }

  Daemon& start_worker(const std::string& id, const std::string& gpus, const std::string& extra = "") {
    workers_.push_back(std::make_unique<Daemon>(
        dir_, "worker-" + id,
        "worker --coordinator " + url() + " --token-file '" + (dir_ / "worker.token").string() +
            "' --id " + id + " --gpus '" + gpus + "' --cpus 4 --lease-wait 1 --kill-grace 1" +
            " --work-dir '" + (dir_ / ("work-" + id)).string() + "' " + extra));
    return *workers_.back();
  }

  Reply post(const std::string& path, const Json& body) {
    return http("POST", url() + path, user_token_, body.dump());
  }
  Reply get(const std::string& path) { return http("GET", url() + path, user_token_); }

  // state -> count for a sweep.
  std::map<std::string, int64_t> counts(const std::string& sweep) {
    Db db(db_path());
    std::map<std::string, int64_t> out;
    for (auto& r : db.rows("SELECT r.state, COUNT(*) FROM runs r JOIN sweeps s ON s.id = r.sweep_id "
                           "WHERE s.name = '" + sweep + "' GROUP BY r.state")) {
      out[r[0]] = std::stoll(r[1]);
    }
    return out;
  }
  bool wait_all(const std::string& sweep, const std::string& state, int64_t n,
                std::chrono::milliseconds limit) {
    return wait_for([&] { return counts(sweep)[state] == n; }, limit);
  }
  std::string diagnostics() {
    std::string s = "coordinator log:\n" + (coord_ ? coord_->logs() : "(stopped)");
    for (auto& w : workers_) s += "\nworker log:\n" + w->logs();
    return s;
  }

  fs::path dir() const { return dir_; }
  fs::path db_path() const { return dir_ / "assay.db"; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::unique_ptr<Daemon>>& workers() { return workers_; }

 private:
  void write_trainers() {
    // trainer.sh STEPS PAUSE: one metric line per step, a malformed line, a
    // checkpoint directory, then exit 0.
    std::ofstream(dir_ / "trainer.sh")
        << "steps=$1; pause=$2; i=0\n"
           "while [ $i -lt $steps ]; do\n"
           "  echo \"{\\\"step\\\": $i, \\\"metrics\\\": {\\\"loss\\\": $i.5, \\\"acc\\\": 0.$i}}\" >&3\n"
           "  sleep $pause; i=$((i+1))\n"
           "done\n"
           "echo 'this is not json' >&3\n"
           "mkdir -p \"$ASSAY_OUTPUT_DIR/ckpt\" && echo \"$ASSAY_RUN_ID\" > \"$ASSAY_OUTPUT_DIR/ckpt/w.bin\"\n"
           "echo \"{\\\"checkpoint\\\": \\\"$ASSAY_OUTPUT_DIR/ckpt\\\", \\\"step\\\": $steps}\" >&3\n"
           "echo \"run $ASSAY_RUN_ID done on GPUs [$CUDA_VISIBLE_DEVICES]\"\n";
    // trainer.py STEPS PAUSE: the same from Python, through ASSAY_METRICS_FD.
    std::ofstream(dir_ / "trainer.py")
        << "import json, os, sys, time\n"
           "out = os.fdopen(int(os.environ['ASSAY_METRICS_FD']), 'w', buffering=1)\n"
           "lr = json.loads(os.environ['ASSAY_PARAMS'])['lr']\n"
           "for step in range(int(sys.argv[1])):\n"
           "    print(json.dumps({'step': step, 'metrics': {'loss': step + 0.5, 'lr': lr}}), file=out)\n"
           "    time.sleep(float(sys.argv[2]))\n";
  }

  fs::path dir_;
  double ttl_;
  int port_ = 0;
  int coord_starts_ = 0;
  std::string user_token_;
  std::unique_ptr<Daemon> coord_;
  std::vector<std::unique_ptr<Daemon>> workers_;
};

// Single-quotes a path for the shell.
inline std::string q(const std::string& s) { return "'" + s + "'"; }

// The first run of a named sweep.
inline int64_t run_id_of(Db& db, const std::string& sweep) {
  return db.scalar("SELECT r.id FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = '" +
                   sweep + "' ORDER BY r.id LIMIT 1");
}

}  // namespace e2e
