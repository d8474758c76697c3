// The real `assay coordinator` binary under hostile input: a runaway query
// must not freeze the server nor outlive SIGTERM, query functions that leak
// or write are refused, malformed HTTP gets an answer, error JSON stays JSON,
// weak token files are warned about, and parked long-polls wake on change.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "assay/coord_client.h"
#include "assay/coordinator.h"

extern char** environ;

using namespace assay::coordinator;
using Json = nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The binary under test; ASSAY_TEST_EXE points these tests at another build
// (to show that an older one fails them).
std::string assay_exe() {
  const char* e = std::getenv("ASSAY_TEST_EXE");
  return e && *e ? e : ASSAY_EXE;
}

constexpr const char* kRunaway =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Sends raw bytes, then reads until the server closes (or 5 s pass).
std::string raw_exchange(int port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "<connect failed>";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading it all
    off += size_t(n);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return out;
}

// The status code and the JSON body of a raw HTTP response.
std::pair<int, Json> parse_raw(const std::string& resp) {
  if (resp.rfind("HTTP/1.1 ", 0) != 0) return {0, Json()};
  int status = std::atoi(resp.c_str() + 9);
  size_t body = resp.find("\r\n\r\n");
  Json j = body == std::string::npos ? Json() : Json::parse(resp.substr(body + 4), nullptr, false);
  return {status, j};
}

class ServerLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/assay_coord_limits_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::string cmd = assay_exe() + " coordinator init --dir " + dir_ + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    user_ = read_token_file(dir_ + "/user.token").value();
    worker_ = read_token_file(dir_ + "/worker.token").value();
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }
  void start(std::vector<std::string> extra = {}) {
    fs::remove(dir_ + "/port");
    std::vector<std::string> args{assay_exe(), "coordinator", "--db",          dir_ + "/results.db",
                                  "--listen", "127.0.0.1:0", "--port-file",   dir_ + "/port",
                                  "--max-body-mb", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    std::string log = dir_ + "/coordinator.log";
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 400 && !fs::exists(dir_ + "/port"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_TRUE(fs::exists(dir_ + "/port")) << slurp(log);
    std::ifstream(dir_ + "/port") >> port_;
  }
  Endpoint ep() const { return {"127.0.0.1", port_}; }
  // Sends SIGTERM and waits up to `within_s` for the exit; the exit status,
  // or -1 when it was still running (then it is killed).
  int terminate_within(double within_s) {
    ::kill(pid_, SIGTERM);
    auto t0 = Clock::now();
    int st = 0;
    while (ms_since(t0) < within_s * 1000) {
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return st;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  std::string dir_, user_, worker_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace

// The runaway query from the field: the server keeps answering health and
// worker calls while it runs, and it fails naming the time budget.
TEST_F(ServerLimits, RunawayQueryRunsOffTheServerThreadAndHitsItsTimeBudget) {
  start({"--query-time-budget", "2"});
  HttpClient w(ep(), worker_, 10);
  ASSERT_EQ(w.request("POST", "/v1/worker/register",
                      Json{{"worker_id", "w1"}, {"instance", "a"}, {"cpus", 1}}.dump())
                ->status,
            200);
  std::atomic<bool> done{false};
  HttpReply query_reply;
  double query_ms = 0;
  std::thread q([&] {
    HttpClient u(ep(), user_, 60);
    auto t0 = Clock::now();
    auto r = u.request("POST", "/v1/query", Json{{"sql", kRunaway}}.dump());
    query_ms = ms_since(t0);
    if (r.ok()) query_reply = *r;
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  HttpClient probe(ep(), user_, 10);
  double worst_ms = 0, worst_hb_ms = 0;
  int probes = 0;
  while (!done && probes < 200) {
    auto t0 = Clock::now();
    auto h = probe.request("GET", "/v1/health");
    worst_ms = std::max(worst_ms, ms_since(t0));
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->status, 200);
    auto t1 = Clock::now();
    auto hb = w.request("POST", "/v1/worker/heartbeat",
                        Json{{"worker_id", "w1"}, {"instance", "a"}}.dump());
    ASSERT_TRUE(hb.ok());
    EXPECT_EQ(hb->status, 200) << hb->body;
    worst_hb_ms = std::max(worst_hb_ms, ms_since(t1));
    ++probes;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  q.join();
  EXPECT_GT(probes, 5) << "the query ended before the server could be probed";
  EXPECT_LT(worst_ms, 200) << "health took " << worst_ms << " ms while the query ran";
  // A heartbeat also commits; it only has to stay far from the lease ttl.
  EXPECT_LT(worst_hb_ms, 1000) << "a heartbeat took " << worst_hb_ms << " ms";
  EXPECT_EQ(query_reply.status, 400) << query_reply.body;
  EXPECT_NE(query_reply.body.find("time budget of 2 s"), std::string::npos) << query_reply.body;
  EXPECT_NE(query_reply.body.find("--query-time-budget"), std::string::npos) << query_reply.body;
  EXPECT_LT(query_ms, 6000);
  // Ordinary queries still work afterwards.
  HttpClient u(ep(), user_, 10);
  Json simple = {{"sql", "SELECT 1 + 1"}};
  auto ok = u.call("POST", "/v1/query", &simple);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ((*ok)["rows"][0][0], 2);
}

// SIGTERM stops the coordinator promptly even while a query runs.
TEST_F(ServerLimits, SigtermStopsTheCoordinatorDuringARunawayQuery) {
  start({"--query-time-budget", "60"});
  std::thread q([&] {
    HttpClient u(ep(), user_, 90);
    (void)u.request("POST", "/v1/query", Json{{"sql", kRunaway}}.dump());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int st = terminate_within(3);
  EXPECT_NE(st, -1) << "still running 3 s after SIGTERM";
  if (st != -1) {
    EXPECT_TRUE(WIFEXITED(st)) << st;
    EXPECT_EQ(WEXITSTATUS(st), 0);
  }
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  q.join();
}

TEST_F(ServerLimits, RowBudgetBoundsMaxRows) {
  start({"--query-max-rows", "5"});
  HttpClient u(ep(), user_, 10);
  Json over = {{"sql", "SELECT 1"}, {"max_rows", 6}};
  auto r = u.request("POST", "/v1/query", over.dump());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("expected 1..5"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("--query-max-rows"), std::string::npos) << r->body;
  // Without max_rows the default stays within the budget: truncated at 5.
  Json many = {{"sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 50) "
                       "SELECT x FROM c"}};
  auto ok = u.call("POST", "/v1/query", &many);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ((*ok)["rows"].size(), 5u);
  EXPECT_EQ((*ok)["truncated"], true);
}

// fts3_tokenizer('simple') returned the address of a struct in the process.
TEST_F(ServerLimits, QueryFunctionsThatLeakOrWriteAreRefused) {
  start();
  HttpClient u(ep(), user_, 10);
  for (const char* sql :
       {"SELECT hex(fts3_tokenizer('simple'))", "SELECT fts3_tokenizer('simple', x'00')",
        "SELECT load_extension('/tmp/x.so')", "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA journal_mode = DELETE", "PRAGMA writable_schema = 1"}) {
    auto r = u.request("POST", "/v1/query", Json{{"sql", sql}}.dump());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 403) << sql << " -> " << r->body;
  }
  auto r = u.request("POST", "/v1/query", Json{{"sql", "SELECT fts3_tokenizer('simple')"}}.dump());
  EXPECT_NE(r->body.find("fts3_tokenizer"), std::string::npos) << r->body;
  // Ordinary functions still work.
  Json ok = {{"sql", "SELECT upper('a'), length(printf('%d', 12))"}};
  auto good = u.call("POST", "/v1/query", &ok);
  ASSERT_TRUE(good.ok()) << good.status().to_string();
  EXPECT_EQ((*good)["rows"][0][0], "A");
  EXPECT_EQ((*good)["rows"][0][1], 2);
}

// Each malformed request gets a JSON error and a closed connection, not
// silence.
TEST_F(ServerLimits, MalformedHttpIsAnsweredNotDropped) {
  start();
  struct Case {
    const char* name;
    std::string bytes;
    int status;
  };
  std::vector<Case> cases = {
      {"garbage", "\x01\x02garbage that is not HTTP\r\n\r\n", 400},
      {"bad request line", "GET\r\n\r\n", 400},
      {"over-long header",
       "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n",
       431},
      {"bad content-length",
       "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n{}", 400},
      {"conflicting content-length",
       "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
       400},
      {"bad chunk size",
       "POST /v1/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
       400},
      {"body over the limit",
       "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{}", 413},
  };
  for (auto& c : cases) {
    std::string resp = raw_exchange(port_, c.bytes);
    auto [status, body] = parse_raw(resp);
    EXPECT_EQ(status, c.status) << c.name << ": " << resp.substr(0, 300);
    EXPECT_TRUE(body.is_object() && body["error"]["message"].is_string())
        << c.name << ": " << resp.substr(0, 300);
  }
  // The server is still fine.
  HttpClient u(ep(), user_, 10);
  EXPECT_EQ(u.request("GET", "/v1/health")->status, 200);
}

// The server's own errors quote the request target; quotes, backslashes and
// bytes that are not UTF-8 must not break the JSON.
TEST_F(ServerLimits, ServerErrorJsonIsEscaped) {
  start();
  std::string target = "/v1/\"},\"x\":{\"y\":\"\\\xff\xfe";
  std::string resp = raw_exchange(
      port_, "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n");
  auto [status, body] = parse_raw(resp);
  EXPECT_EQ(status, 413) << resp;
  ASSERT_TRUE(body.is_object()) << resp;
  EXPECT_EQ(body.size(), 1u) << resp;
  std::string msg = body["error"]["message"];
  EXPECT_NE(msg.find("/v1/\"},\"x\":{\"y\":\"\\"), std::string::npos) << msg;
  // A control character in the target: refused by the parser, still JSON.
  auto [st2, body2] = parse_raw(raw_exchange(port_, "GET /v1/\x01\x7f HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(st2, 400);
  EXPECT_TRUE(body2.is_object());
}

TEST_F(ServerLimits, WarnsAboutReadableOrSharedTokens) {
  ASSERT_EQ(::chmod((dir_ + "/user.token").c_str(), 0644), 0);
  start();
  ASSERT_EQ(terminate_within(5), 0);
  std::string log = slurp(dir_ + "/coordinator.log");
  EXPECT_NE(log.find("warning: " + dir_ + "/user.token has mode 0644"), std::string::npos) << log;
  EXPECT_EQ(log.find("worker.token has mode"), std::string::npos) << log;
  EXPECT_EQ(log.find("are equal"), std::string::npos) << log;

  ASSERT_EQ(::chmod((dir_ + "/user.token").c_str(), 0600), 0);
  fs::copy_file(dir_ + "/user.token", dir_ + "/worker.token", fs::copy_options::overwrite_existing);
  fs::remove(dir_ + "/coordinator.log");
  start();
  ASSERT_EQ(terminate_within(5), 0);
  log = slurp(dir_ + "/coordinator.log");
  EXPECT_NE(log.find("are equal"), std::string::npos) << log;
  EXPECT_EQ(log.find("has mode"), std::string::npos) << log;
}

// Parked long-polls are answered when something they wait for happens: a
// lease by a submitted run, a log follower by a log chunk.
TEST_F(ServerLimits, ParkedLongPollsWakeOnChange) {
  start();
  HttpClient w(ep(), worker_, 30), u(ep(), user_, 30);
  Json reg = {{"worker_id", "w1"}, {"instance", "a"}, {"cpus", 1}};
  ASSERT_TRUE(w.call("POST", "/v1/worker/register", &reg).ok());
  Json lease_reply;
  double lease_ms = 0;
  std::thread lease([&] {
    HttpClient c(ep(), worker_, 30);
    auto t0 = Clock::now();
    Json b = {{"worker_id", "w1"}, {"max_runs", 1}, {"wait_s", 20}};
    auto r = c.call("POST", "/v1/worker/lease", &b);
    lease_ms = ms_since(t0);
    if (r.ok()) lease_reply = *r;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Json run = {{"name", "r"}, {"command", "true"}};
  auto sub = u.call("POST", "/v1/runs", &run);
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  lease.join();
  ASSERT_EQ(lease_reply["runs"].size(), 1u) << lease_reply.dump();
  EXPECT_LT(lease_ms, 10000);
  int64_t id = lease_reply["runs"][0]["run_id"];
  Json started = {{"worker_id", "w1"}, {"attempt", 1}};
  ASSERT_TRUE(w.call("POST", "/v1/worker/runs/" + std::to_string(id) + "/started", &started).ok());

  HttpReply logs;
  double logs_ms = 0;
  std::thread follow([&] {
    HttpClient c(ep(), user_, 30);
    auto t0 = Clock::now();
    auto r = c.request("GET", "/v1/runs/" + std::to_string(id) + "/logs?wait_s=20");
    logs_ms = ms_since(t0);
    if (r.ok()) logs = *r;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto chunk = w.request("POST",
                         "/v1/worker/runs/" + std::to_string(id) +
                             "/logs?worker_id=w1&attempt=1&stream=stdout&offset=0",
                         "hello\n", "application/octet-stream");
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(chunk->status, 200) << chunk->body;
  follow.join();
  EXPECT_EQ(logs.status, 200);
  EXPECT_EQ(logs.body, "hello\n");
  EXPECT_LT(logs_ms, 10000);
}
