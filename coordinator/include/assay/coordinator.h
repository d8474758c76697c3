// The coordinator: owner of the run queue, the workers' leases and the
// results database, behind an HTTP/1.1 JSON API (see docs in /v1 routes).
//
// Threading: a Coordinator is single-threaded. The server drives it from one
// io_context thread, so all scheduler state and every SQLite write go through
// that one owner; each request's writes are one transaction.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "assay/status.h"

namespace assay::coordinator {

struct Options {
  std::string db_path;
  std::string logs_dir;          // default: <db_path>.logs
  std::string user_token;        // bearer tokens (hex); empty = that role is refused
  std::string worker_token;
  double lease_ttl_s = 30;
  size_t max_body_bytes = 8u << 20;
  size_t max_points_per_batch = 10000;
  // Unix seconds. Tests inject a fake clock; empty = the wall clock.
  std::function<double()> clock;
  // The `assay` executable that eval runs created by a sweep's `evals` hooks
  // invoke ("<assay_exe> eval <suite> --model-path <checkpoint> ...").
  // Empty = this process's own binary (/proc/self/exe, resolved at open).
  std::string assay_exe;
  // Budgets of one /v1/query: wall-clock seconds before it is interrupted,
  // and the most rows it may ask for (its max_rows; `assay sweep export`
  // asks for 1,000,000, the cap before this budget existed).
  double query_time_budget_s = 10;
  size_t query_max_rows = 1000000;
  // When an acknowledged write is durable (the store's WAL synchronous mode):
  // "normal" survives a crash of the coordinator process, "full" also power
  // loss and OS crashes (an fsync per group commit, ~4.5 ms here, which
  // bounds the commit rate). Every ack that reports stored data says which
  // one is in force ("durability").
  std::string durability = "normal";
};

// The longest a long-poll (lease, logs?wait_s) is held before it is answered
// with what there is, in seconds.
constexpr double kLongPollCapS = 25;

struct Request {
  std::string method;            // "GET", "POST", ...
  std::string target;            // path plus query, e.g. "/v1/runs?state=queued"
  std::string authorization;     // the Authorization header value
  std::string body;
  // Set by the server when a long-poll's wait ran out: answer with what there is.
  bool wait_expired = false;
  // Set by a server that runs Response::deferred off its thread; without it
  // a handler does that work itself before answering.
  bool can_defer = false;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Long-poll: nothing to return yet; the server retries the same request
  // until wait_s has passed, then once more with wait_expired.
  // The server holds it (at most kLongPollCapS) and re-asks when a request
  // that may have changed state (any but GET) was handled, or a tick wrote.
  bool retry = false;
  double wait_s = 0;
  // Slow work that must not hold the server thread (users' SQL): the server
  // runs it on a worker thread and answers with what it returns. `cancel` is
  // set when the server stops. Only returned when Request::can_defer.
  using Deferred = std::function<Response(const std::atomic<bool>& cancel)>;
  Deferred deferred;
};

class Coordinator {
 public:
  // Opens (and migrates) the database and reloads queued/leased/running
  // runs. Every reloaded lease gets a fresh deadline of now + lease_ttl_s.
  static Result<std::unique_ptr<Coordinator>> open(const Options& opts);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The whole API: routing, auth, validation, state changes. Never throws.
  Response handle_request(const Request& req);
  // Expires lost leases (requeue with attempt + 1, or fail lost_worker).
  // The server calls it about once a second.
  void tick();

  // Group commit, which serve() turns on: the state changes of many requests
  // become durable together at commit(), and a request that changed anything
  // must be answered only after the commit that follows it. Off (the
  // default), each change commits before handle_request returns.
  void set_group_commit(bool on);
  bool commit_pending() const;
  // On failure the whole batch is undone, in the database and in memory
  // (rebuilt from the database), and its requests must be answered with an error.
  Status commit();

  double now() const;
  const Options& options() const { return opts_; }

  struct Impl;

 private:
  explicit Coordinator(std::unique_ptr<Impl> impl, Options opts);
  std::unique_ptr<Impl> impl_;
  Options opts_;
};

// ---- Server ---------------------------------------------------------------

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8470;               // 0 = any free port
  size_t max_connections = 512;
  double read_timeout_s = 30;    // a request must arrive within this
  double tick_s = 1.0;           // lease expiry check period
  // Called once the socket listens, with the bound port.
  std::function<void(int port)> on_listening;
  std::string server_name = "assay-coordinator";  // Server header, error prefix
  // Threads for Response::deferred work, and how much of it may be queued or
  // running at once (more is answered 503).
  size_t deferred_threads = 2;
  size_t max_deferred = 64;
};

// Serves on the calling thread until SIGINT/SIGTERM, or until *stop_flag
// becomes true when given (polled every 50 ms).
Status serve(Coordinator& coord, const ServerOptions& opts,
             const std::atomic<bool>* stop_flag = nullptr);

// The transport under serve(), for any request handler (also `assay serve`):
// HTTP/1.1 keep-alive, bodies up to max_body_bytes (else 413), malformed
// requests answered 400/431 then closed, long-poll retries when a Response
// asks for them, Response::deferred run on a small pool of worker threads.
// The handler and on_tick (may be empty; called about every opts.tick_s) run
// on the single server thread.
using HttpHandler = std::function<Response(const Request&)>;
// Group commit for a handler that writes: after a request, when pending()
// says writes wait, the server answers only after the next commit(), which
// it runs once the requests already received have been handled. A failed
// commit turns each answer of its batch into a 503.
struct CommitHooks {
  std::function<bool()> pending;
  std::function<Status()> commit;
};
Status serve_http(const HttpHandler& handler, const ServerOptions& opts, size_t max_body_bytes,
                  const std::atomic<bool>* stop_flag = nullptr,
                  const std::function<void()>& on_tick = {}, const CommitHooks& commit = {});

// The same transport for a handler that answers later, from any thread:
// it gets the request and a reply function to call exactly once (the
// connection waits for it; other connections are served meanwhile). The
// handler itself runs on the server thread and must not block. Calling the
// reply after serve_http_async has returned is harmless (dropped).
using HttpRespond = std::function<void(Response)>;
using AsyncHttpHandler = std::function<void(const Request&, HttpRespond)>;
Status serve_http_async(const AsyncHttpHandler& handler, const ServerOptions& opts,
                        size_t max_body_bytes, const std::atomic<bool>* stop_flag = nullptr,
                        const std::function<void()>& on_tick = {});

// ---- Tokens ---------------------------------------------------------------

// Writes <dir>/user.token and <dir>/worker.token (64 hex chars from
// /dev/urandom, mode 0600). Refuses to overwrite unless `force`.
Status init_tokens(const std::string& dir, bool force);
// Reads a token file, stripping whitespace. Empty file is an error.
Result<std::string> read_token_file(const std::string& path);
// Constant-time equality (time depends only on the lengths).
bool tokens_equal(const std::string& a, const std::string& b);

}  // namespace assay::coordinator
