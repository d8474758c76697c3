// The one HTTP client for calls to the coordinator, against real servers on
// 127.0.0.1: every failure names the method and URL, and says what happened
// (refused, an error document's code and message, a 5xx, a timeout, an
// abort).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "assay/http_client.h"
#include "worker/fake_coordinator.h"

namespace {

using assay::Code;
using assay::http::Client;
using assay::http::Endpoint;
using Clock = std::chrono::steady_clock;

// A listening socket that never accepts: connections complete (the kernel's
// backlog) and requests are sent, but no reply ever comes.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port nothing listens on: bound, then closed.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

double secs_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(HttpClient, RefusedConnectionNamesMethodAndUrl) {
  const int port = closed_port();
  Client c(Endpoint{"127.0.0.1", port}, "t", 5);
  auto r = c.call("GET", "/v1/runs");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "GET http://127.0.0.1:" + std::to_string(port) + "/v1/runs: cannot connect: Connection refused");
}

TEST(HttpClient, ClientErrorCarriesTheServersCodeAndMessage) {
  worker_test::FakeCoordinator fake([](const std::string&, const std::string&) {
    return worker_test::FakeReply{400, R"({"error": {"code": "invalid_spec", "message": "s.json: /seeds/1: repeat"}})"};
  });
  Client c(*assay::http::parse_url(fake.url()), "t", 5);
  nlohmann::json body = {{"name", "s"}};
  auto r = c.call("POST", "/v1/sweeps", &body);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "POST " + fake.url() + "/v1/sweeps: HTTP 400 invalid_spec: s.json: /seeds/1: repeat");
  // request() hands the same reply over as a value.
  auto raw = c.request("POST", "/v1/sweeps", body.dump());
  ASSERT_TRUE(raw.ok()) << raw.status().message();
  EXPECT_EQ(raw->status, 400);
  EXPECT_EQ(assay::http::server_error(raw->body).code, "invalid_spec");
}

TEST(HttpClient, ServerErrorWithoutAnErrorDocumentShowsTheBody) {
  worker_test::FakeCoordinator fake([](const std::string& path, const std::string&) {
    if (path == "/v1/busy") return worker_test::FakeReply{503, "try later"};
    return worker_test::FakeReply{500, R"({"error": {"code": "internal", "message": "disk full"}})"};
  });
  Client c(*assay::http::parse_url(fake.url()), "t", 5);
  auto busy = c.call("GET", "/v1/busy");
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kUnavailable);
  EXPECT_EQ(busy.status().message(), "GET " + fake.url() + "/v1/busy: HTTP 503: try later");
  EXPECT_TRUE(assay::http::reply_is_retryable(503));
  auto broken = c.call("GET", "/v1/runs");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), Code::kInternal);
  EXPECT_EQ(broken.status().message(), "GET " + fake.url() + "/v1/runs: HTTP 500 internal: disk full");
}

TEST(HttpClient, NoReplyTimesOutNamingTheDeadline) {
  SilentServer silent;
  Client c(Endpoint{"127.0.0.1", silent.port()}, "t", 0.5);
  const auto t0 = Clock::now();
  auto r = c.call("GET", "/v1/health");
  const double took = secs_since(t0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "GET http://127.0.0.1:" + std::to_string(silent.port()) + "/v1/health: no reply within 0.5 s");
  EXPECT_GE(took, 0.4);
  EXPECT_LT(took, 5.0);
}

TEST(HttpClient, AbortFlagCutsAnExchangeShort) {
  SilentServer silent;
  std::atomic<bool> abort{false};
  assay::http::Options opts;
  opts.timeout_s = 60;
  opts.abort = &abort;
  Client c(Endpoint{"127.0.0.1", silent.port()}, "t", opts);
  std::thread raiser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    abort = true;
  });
  const auto t0 = Clock::now();
  auto r = c.request("POST", "/v1/worker/lease", "{}");
  const double took = secs_since(t0);
  raiser.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "POST http://127.0.0.1:" + std::to_string(silent.port()) + "/v1/worker/lease: aborted");
  EXPECT_LT(took, 5.0);
}

TEST(HttpClient, SuccessfulCallsParseJsonAndKeepGoingAfterServerCloses) {
  worker_test::FakeCoordinator fake([](const std::string& path, const std::string& body) {
    return worker_test::FakeReply{200, nlohmann::json{{"path", path}, {"body", body}}.dump()};
  });
  Client c(*assay::http::parse_url(fake.url() + "/"), "t", 5);
  for (int i = 0; i < 3; ++i) {  // the fake closes every connection after its reply
    nlohmann::json b = {{"i", i}};
    auto r = c.call("POST", "/v1/x", &b);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ((*r)["path"], "/v1/x");
    EXPECT_EQ((*r)["body"], b.dump());
  }
}

TEST(HttpClient, UrlsAreCheckedUpFront) {
  EXPECT_EQ(assay::http::parse_url("https://h:1").status().message(),
            "coordinator url https://h:1: https is not supported; use http://");
  EXPECT_EQ(assay::http::parse_url("h").status().message(), "coordinator url 'h': expected http://HOST:PORT");
  EXPECT_EQ(assay::http::parse_url("h:99999999999").status().message(),
            "coordinator url 'h:99999999999': port is not a number");
  EXPECT_EQ(assay::http::parse_url("h:0").status().message(), "coordinator url 'h:0': port must be 1..65535");
  auto ep = assay::http::parse_url("http://127.0.0.1:8700/");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->url(), "http://127.0.0.1:8700");
}

}  // namespace
