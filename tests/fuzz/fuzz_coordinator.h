// One coordinator for a fuzz target's whole run, reached without sockets
// through Coordinator::handle_request (as tests/coordinator/handler_fixture.h
// does), with a fake clock and both bearer tokens.
//
// Its database lives in the scratch directory and is replaced by a fresh one
// every kRequestsPerDb requests, so the queue a long run builds up does not
// slow every later input down. A crash that needs earlier inputs' state is
// reproduced by running the target over the crash file and the corpus.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "fuzz_common.h"

namespace assay::fuzz {

inline constexpr const char* kUserToken = "u0123456789abcdef";
inline constexpr const char* kWorkerToken = "w0123456789abcdef";

class FuzzCoordinator {
 public:
  static FuzzCoordinator& get() {
    static FuzzCoordinator c;
    return c;
  }

  coordinator::Coordinator& coord() {
    if (!coord_ || served_ >= kRequestsPerDb) reopen();
    return *coord_;
  }
  const coordinator::Options& options() { return coord().options(); }

  // Sends one request; checks what every answer must satisfy; remembers the
  // last run id an answer named, for "{run}" in later requests of the input.
  coordinator::Response send(coordinator::Request req) {
    coordinator::Coordinator& c = coord();
    ++served_;
    now_ += 1;
    req.wait_expired = true;  // no long-poll waits: answer with what there is
    coordinator::Response r = c.handle_request(req);
    check(req, r);
    c.tick();
    return r;
  }

  int64_t last_run() const { return last_run_; }

 private:
  static constexpr int kRequestsPerDb = 2000;

  void reopen() {
    coord_.reset();
    const auto dir = ScratchDir::get() / "coordinator";
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir);
    coordinator::Options o;
    o.db_path = (dir / "results.db").string();
    o.user_token = kUserToken;
    o.worker_token = kWorkerToken;
    o.lease_ttl_s = 30;
    o.clock = [this] { return now_; };
    o.assay_exe = "/bin/true";  // eval hooks only record the command
    // A runaway query (WITH RECURSIVE ...) is interrupted well within -timeout.
    o.query_time_budget_s = 2;
    auto c = coordinator::Coordinator::open(o);
    if (!c.ok()) {
      fprintf(stderr, "fuzz: cannot open the coordinator: %s\n", c.status().to_string().c_str());
      abort();
    }
    coord_ = std::move(c).value();
    served_ = 0;
    last_run_ = 1;
  }

  // Invariants of every answer (the API's contract, coordinator.h):
  // a real status; JSON bodies parse; errors have {"error": {code, message}};
  // a long-poll whose wait ran out does not ask to wait again.
  void check(const coordinator::Request& req, const coordinator::Response& r) {
    auto fail = [&](const char* what) {
      fprintf(stderr, "fuzz: %s\n  request: %s %s (%zu-byte body)\n  answer: %d %s\n", what,
                  req.method.c_str(), req.target.c_str(), req.body.size(), r.status,
                  r.body.substr(0, 2000).c_str());
      abort();
    };
    if (r.status < 100 || r.status > 599) fail("status out of range");
    if (r.retry) fail("asks to wait again after the wait ran out");
    if (r.content_type != "application/json") return;
    const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded()) fail("application/json body does not parse");
    if (r.status >= 400) {
      if (!j.is_object() || !j.contains("error") || !j["error"].is_object() ||
          !j["error"].contains("code") || !j["error"]["code"].is_string() ||
          !j["error"].contains("message") || !j["error"]["message"].is_string()) {
        fail("error body lacks {\"error\": {code, message}}");
      }
      return;
    }
    remember_run(j);
  }

  void remember_run(const nlohmann::json& j) {
    if (!j.is_object()) return;
    if (j.contains("run") && j["run"].is_object() && j["run"].contains("id") &&
        j["run"]["id"].is_number_integer()) {
      last_run_ = j["run"]["id"].get<int64_t>();
    } else if (j.contains("runs") && j["runs"].is_array() && !j["runs"].empty()) {
      const auto& r0 = j["runs"][0];
      if (r0.is_object() && r0.contains("run_id") && r0["run_id"].is_number_integer()) {
        last_run_ = r0["run_id"].get<int64_t>();
      } else if (r0.is_number_integer()) {
        last_run_ = r0.get<int64_t>();
      }
    }
  }

  std::unique_ptr<coordinator::Coordinator> coord_;
  int served_ = 0;
  double now_ = 1'700'000'000;
  int64_t last_run_ = 1;
};

// "U" user token, "W" worker token, "X" an unknown token, anything else none.
inline std::string authorization_for(std::string_view role) {
  if (role == "U") return std::string("Bearer ") + kUserToken;
  if (role == "W") return std::string("Bearer ") + kWorkerToken;
  if (role == "X") return "Bearer 00000000";
  return "";
}

// Replaces every "{run}" with the last run id an answer named.
inline std::string with_run(std::string s, int64_t run) {
  const std::string id = std::to_string(run);
  for (size_t at = s.find("{run}"); at != std::string::npos; at = s.find("{run}", at + id.size()))
    s.replace(at, 5, id);
  return s;
}

}  // namespace assay::fuzz
