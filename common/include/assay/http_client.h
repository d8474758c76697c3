// The one HTTP/1.1 client for calls to the coordinator, used by the CLI, the
// worker, tests and benchmarks (Boost.Beast; plain http only).
//
// One error behaviour everywhere:
//   - a transport failure (refused, unreachable, timed out, closed, aborted)
//     is Unavailable, and its message names the method, the URL and what
//     happened: "POST http://127.0.0.1:8700/v1/worker/lease: connection
//     refused", "GET http://h:1/v1/runs: no reply within 2 s";
//   - request() returns any HTTP reply, 4xx/5xx included, as a value;
//   - call() turns a non-2xx reply into a Status whose message names the
//     method, the URL, the status and the server's error:
//     "POST http://h:1/v1/sweeps: HTTP 400 invalid_spec: s.json: /seeds/1: ...";
//   - timeouts: a connect timeout, and one deadline for sending the request
//     and reading the whole reply; an optional abort flag (shutdown) cuts an
//     exchange short within 50 ms;
//   - one retry, only when a kept-alive connection turns out to have been
//     closed by the server before it sent any reply; callers decide about
//     every other retry (reply_is_retryable says when one makes sense).
//
// Keep-alive over one connection. Not thread-safe: one client per thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay::http {

struct Endpoint {
  std::string host;
  int port = 0;
  std::string url() const;  // "http://HOST:PORT"
};

// "http://HOST:PORT[/]" or "HOST:PORT". https is not supported.
Result<Endpoint> parse_url(const std::string& url);

struct Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

// The coordinator's error document, {"error": {"code": ..., "message": ...}};
// empty strings where the body has no such field.
struct ServerError {
  std::string code;
  std::string message;
};
ServerError server_error(std::string_view body);

// 5xx: the server asked to be tried again later (transport failures are
// retryable too, but they never produce a Reply).
inline bool reply_is_retryable(int status) { return status >= 500; }

// The Status for a non-2xx reply: "METHOD URL: HTTP STATUS CODE: MESSAGE"
// (or the start of the body when it is no error document). 400 ->
// InvalidArgument, 401/403 -> PermissionDenied, 404 -> NotFound,
// 409 -> FailedPrecondition, 503 -> Unavailable, any other -> Internal.
Status reply_status(const std::string& method, const std::string& url, const Reply& rep);

struct Options {
  double timeout_s = 60;          // send the request and read the whole reply
  double connect_timeout_s = 10;  // resolve and connect
  const std::atomic<bool>* abort = nullptr;  // when set: cut the exchange short
  std::string user_agent;  // empty: "assay/VERSION"
};

class Client {
 public:
  Client(Endpoint ep, std::string token, Options opts = {});
  // The common case: a deadline in seconds, default options otherwise.
  Client(Endpoint ep, std::string token, double timeout_s);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One exchange. `timeout_s` <= 0 uses the client's deadline.
  Result<Reply> request(const std::string& method, const std::string& target,
                        std::string_view body = {},
                        const std::string& content_type = "application/json",
                        double timeout_s = 0);
  // JSON in, JSON out: a 2xx reply's body, parsed (with the depth limit of
  // assay/json_limits.h; a body that is no JSON is Corruption), or the
  // Status of reply_status().
  Result<nlohmann::json> call(const std::string& method, const std::string& target,
                              const nlohmann::json* body = nullptr);

  void set_timeout(double s) { opts_.timeout_s = s; }
  const Endpoint& endpoint() const { return ep_; }
  // ep.url() + target: what error messages name.
  std::string url(const std::string& target) const { return ep_.url() + target; }

 private:
  struct Conn;
  Status connect(const std::string& what);
  Endpoint ep_;
  std::string token_;
  Options opts_;
  std::unique_ptr<Conn> conn_;
};

}  // namespace assay::http
