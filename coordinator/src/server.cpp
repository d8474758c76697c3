// HTTP/1.1 server: one listener coroutine, one coroutine per connection, all
// on a single io_context thread, so the Coordinator needs no locking. An
// asynchronous handler (serve_http_async) answers from another thread by
// posting its reply back to that thread; so does Response::deferred work,
// which runs on a DeferredPool. Long-polls sleep until a request that may
// have changed state was handled (or a tick wrote), then re-ask their handler.
#include <utility>  // before Asio: GCC 12 + Boost 1.74 need std::exchange declared

#include <boost/asio.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "deferred_pool.h"

namespace assay::coordinator {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;  // request line plus header fields

// Group commit bookkeeping (see CommitHooks). Batches are numbered by the
// commit that closes them: requests handled while `done` commits have run
// belong to batch done + 1.
struct Batches {
  uint64_t done = 0;
  bool scheduled = false;
  uint64_t failed = 0;  // number of the last batch whose commit failed
  std::string failure;
};

// Open while the io_context runs: an asynchronous reply posts to it only
// then, so a late reply never touches a destroyed io_context.
struct Gate {
  std::mutex mu;
  bool open = true;
};

// The timers of parked long-polls. Shared, so that a coroutine frame
// destroyed along with the io_context can still unregister itself.
using Waiters = std::set<net::steady_timer*>;

struct ServerState {
  const HttpHandler* handler;         // exactly one of the two is set
  const AsyncHttpHandler* async_handler;
  const std::function<void()>& on_tick;
  ServerOptions opts;
  size_t max_body;
  const CommitHooks& hooks;
  net::steady_timer& committed;  // cancelled after each commit: wakes waiters
  size_t active = 0;
  Batches batches;
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::shared_ptr<Waiters> waiters = std::make_shared<Waiters>();
  std::unique_ptr<DeferredPool> pool;  // created by run_server
};

// Something may have changed: every parked long-poll asks its handler again.
void wake_waiters(ServerState& st) {
  for (net::steady_timer* t : *st.waiters) t->cancel();
}

// An asynchronous answer on its way to the connection that waits for it.
// Only the server thread touches it (the reply posts there).
struct Pending {
  Response resp;
  bool done = false;
  net::steady_timer* wake = nullptr;  // the waiting connection's timer, while it waits
};

// Runs the asynchronous handler and waits (without blocking the thread) for
// its reply.
net::awaitable<Response> call_async(ServerState& st, const Request& req) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer wake(ex, net::steady_timer::time_point::max());
  auto pending = std::make_shared<Pending>();
  pending->wake = &wake;
  struct Unhook {
    Pending& p;
    ~Unhook() { p.wake = nullptr; }
  } unhook{*pending};
  HttpRespond reply = [pending, gate = st.gate, ex](Response r) {
    std::lock_guard<std::mutex> lock(gate->mu);
    if (!gate->open) return;
    net::post(ex, [pending, r = std::move(r)]() mutable {
      if (pending->done) return;  // a second call: the first answer stands
      pending->resp = std::move(r);
      pending->done = true;
      if (pending->wake) pending->wake->cancel();
    });
  };
  (*st.async_handler)(req, std::move(reply));
  while (!pending->done) {
    try {
      co_await wake.async_wait(net::use_awaitable);
    } catch (const boost::system::system_error&) {
      // cancelled: the reply arrived
    }
  }
  co_return std::move(pending->resp);
}

// Runs after every handler that is already runnable, so one commit covers
// the requests that arrived together.
void schedule_commit(ServerState& st) {
  if (st.batches.scheduled || !st.hooks.commit) return;
  st.batches.scheduled = true;
  net::post(st.committed.get_executor(), [&st] {
    st.batches.scheduled = false;
    Status s = st.hooks.commit();
    ++st.batches.done;
    if (!s.ok()) {
      st.batches.failed = st.batches.done;
      st.batches.failure = s.message();
    }
    st.committed.cancel();
  });
}

// Waits until the writes of the request just handled are durable. Returns
// false when their commit failed.
net::awaitable<bool> await_commit(ServerState& st) {
  if (!st.hooks.pending || !st.hooks.pending()) co_return true;
  const uint64_t mine = st.batches.done + 1;
  schedule_commit(st);
  while (st.batches.done < mine) {
    try {
      co_await st.committed.async_wait(net::use_awaitable);
    } catch (const boost::system::system_error&) {
      // cancelled: a commit ran; check whether it was ours
    }
  }
  co_return st.batches.failed != mine;
}

http::response<http::string_body> to_http(const Response& r, unsigned version, bool keep_alive,
                                          const std::string& server_name) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, server_name);
  res.set(http::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = r.body;
  res.prepare_payload();
  return res;
}

// The message may quote the request (its target, say): serialised, never
// concatenated, and invalid UTF-8 becomes U+FFFD instead of a throw.
Response plain_error(int status, const std::string& code, const std::string& msg) {
  Response r;
  r.status = status;
  nlohmann::json j = {{"error", {{"code", code}, {"message", msg}}}};
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

// The answer to a request Beast could not parse, or none when the peer just
// went away (closed, timed out) and nobody is left to read it.
std::optional<Response> malformed(const beast::error_code& ec) {
  if (ec == http::error::header_limit)
    return plain_error(431, "header_too_large",
                       "request header exceeds " + std::to_string(kMaxHeaderBytes) + " bytes");
  if (ec.category() != beast::error_code(http::error::bad_target).category()) return std::nullopt;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
      ec == http::error::need_more || ec == http::error::need_buffer ||
      ec == http::error::body_limit)
    return std::nullopt;
  return plain_error(400, "bad_request", "malformed HTTP request: " + ec.message());
}

std::chrono::steady_clock::duration secs(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// Runs Response::deferred on the pool and waits (without blocking the
// thread) for what it returns.
net::awaitable<Response> run_deferred(ServerState& st, Response::Deferred work) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer wake(ex, net::steady_timer::time_point::max());
  auto pending = std::make_shared<Pending>();
  pending->wake = &wake;
  struct Unhook {
    Pending& p;
    ~Unhook() { p.wake = nullptr; }
  } unhook{*pending};
  auto job = [pending, gate = st.gate, ex, work = std::move(work)](const std::atomic<bool>& cancel) {
    Response r;
    try {
      r = work(cancel);
    } catch (const std::exception& e) {
      r = plain_error(500, "internal", std::string("unexpected error: ") + e.what());
    }
    std::lock_guard<std::mutex> lock(gate->mu);
    if (!gate->open) return;
    net::post(ex, [pending, r = std::move(r)]() mutable {
      pending->resp = std::move(r);
      pending->done = true;
      if (pending->wake) pending->wake->cancel();
    });
  };
  if (!st.pool->submit(std::move(job)))
    co_return plain_error(503, "unavailable",
                          "too busy: " + std::to_string(st.pool->max_jobs()) +
                              " slow requests (queries) are already queued or running; retry later");
  while (!pending->done) {
    try {
      co_await wake.async_wait(net::use_awaitable);
    } catch (const boost::system::system_error&) {
      // cancelled: the answer arrived
    }
  }
  co_return std::move(pending->resp);
}

// One answer from the handler, with its deferred work done.
net::awaitable<Response> answer(ServerState& st, const Request& req) {
  // No co_await inside ?: (GCC 12 destroys the temporary twice).
  Response resp;
  if (st.async_handler) {
    resp = co_await call_async(st, req);
  } else {
    resp = (*st.handler)(req);
  }
  if (resp.deferred) {
    auto work = std::move(resp.deferred);
    resp = co_await run_deferred(st, std::move(work));
  }
  co_return resp;
}

// A long-poll: sleeps until something may have changed (wake_waiters) or the
// wait is over, re-asking the handler each time; the last ask has
// wait_expired set.
net::awaitable<Response> hold(ServerState& st, Request& req, Response resp) {
  auto deadline = std::chrono::steady_clock::now() + secs(std::min(resp.wait_s, kLongPollCapS));
  net::steady_timer timer(co_await net::this_coro::executor);
  struct Registered {
    std::shared_ptr<Waiters> set;
    net::steady_timer* t;
    ~Registered() { set->erase(t); }
  } reg{st.waiters, &timer};
  st.waiters->insert(&timer);
  while (resp.retry) {
    if (std::chrono::steady_clock::now() < deadline) {
      timer.expires_at(deadline);
      try {
        co_await timer.async_wait(net::use_awaitable);
      } catch (const boost::system::system_error&) {
        // woken early: something may have changed
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) req.wait_expired = true;
    resp = co_await answer(st, req);
  }
  co_return resp;
}

// After an error answer that ends the connection: stop sending, then read
// and drop what the client still sends (bounded), because closing with
// unread bytes resets the connection and the client could lose the answer.
net::awaitable<void> drain(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::vector<char> sink(64 * 1024);
  size_t drained = 0;
  stream.expires_after(std::chrono::seconds(2));
  while (drained < (256u << 20)) {
    drained += co_await stream.async_read_some(net::buffer(sink), net::use_awaitable);
  }
}

net::awaitable<void> session(tcp::socket socket, ServerState& st) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  ++st.active;
  struct Leave {
    size_t& n;
    ~Leave() { --n; }
  } leave{st.active};
  bool over_limit = st.active > st.opts.max_connections;
  auto timeout = secs(st.opts.read_timeout_s);
  try {
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kMaxHeaderBytes);
      // No limit while reading the header (Beast would fail the header read
      // itself; boost::none misbehaves in 1.74); the size is checked below so
      // the client gets a 413.
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      stream.expires_after(timeout);
      // Read the header first: answer "Expect: 100-continue" and refuse an
      // oversized body before it is sent.
      bool too_large = false;
      beast::error_code ec;
      co_await http::async_read_header(stream, buffer, parser,
                                       net::redirect_error(net::use_awaitable, ec));
      if (ec == http::error::end_of_stream) break;
      std::optional<Response> bad;
      if (ec && !(bad = malformed(ec))) throw boost::system::system_error(ec);
      if (!bad && parser.content_length() && *parser.content_length() > st.max_body) {
        too_large = true;
      } else if (!bad) {
        auto& hdr = parser.get();
        parser.body_limit(st.max_body);  // also bounds chunked bodies
        if (beast::iequals(hdr[http::field::expect], "100-continue")) {
          http::response<http::empty_body> cont{http::status::continue_, hdr.version()};
          co_await http::async_write(stream, cont, net::use_awaitable);
        }
        co_await http::async_read(stream, buffer, parser,
                                  net::redirect_error(net::use_awaitable, ec));
        if (ec == http::error::body_limit) too_large = true;
        else if (ec && !(bad = malformed(ec))) throw boost::system::system_error(ec);
      }
      auto& hreq = parser.get();
      const bool close_after = too_large || bad.has_value();
      bool keep_alive = !close_after && hreq.keep_alive() && !over_limit;
      Response resp;
      if (bad) {
        resp = std::move(*bad);
      } else if (too_large) {
        resp = plain_error(413, "payload_too_large",
                           "body of " + std::string(hreq.method_string()) + " " +
                               std::string(hreq.target()) + " exceeds " +
                               std::to_string(st.max_body) + " bytes");
      } else if (over_limit) {
        resp = plain_error(503, "unavailable", "too many connections; retry later");
      } else {
        Request req;
        req.method = std::string(hreq.method_string());
        req.target = std::string(hreq.target());
        req.authorization = std::string(hreq[http::field::authorization]);
        req.body = std::move(hreq.body());
        req.can_defer = true;
        resp = co_await answer(st, req);
        // A request that may have changed state (anything but a read, and
        // not a long-poll that found nothing) wakes the parked long-polls.
        if (req.method != "GET" && !resp.retry) wake_waiters(st);
        if (resp.retry) resp = co_await hold(st, req, std::move(resp));
      }
      if (!co_await await_commit(st)) {
        resp = plain_error(503, "unavailable",
                           "the change could not be committed: " + st.batches.failure);
      }
      // A malformed request may not even have a version: answer in HTTP/1.1.
      auto res = to_http(resp, bad ? 11 : hreq.version(), keep_alive, st.opts.server_name);
      stream.expires_after(timeout);
      co_await http::async_write(stream, res, net::use_awaitable);
      if (close_after) co_await drain(stream);
      if (!keep_alive) break;
    }
  } catch (const boost::system::system_error&) {
    // Peer closed, reset, or timed out: nothing to answer.
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

net::awaitable<void> listener(tcp::acceptor& acceptor, ServerState& st) {
  for (;;) {
    bool backoff = false;
    try {
      tcp::socket s = co_await acceptor.async_accept(net::use_awaitable);
      // Small request/response exchanges: never hold a segment back waiting
      // for the peer's (delayed) ACK.
      boost::system::error_code nd;
      s.set_option(tcp::no_delay(true), nd);
      net::co_spawn(acceptor.get_executor(), session(std::move(s), st), net::detached);
    } catch (const boost::system::system_error& e) {
      if (e.code() == net::error::operation_aborted) co_return;
      backoff = true;  // EMFILE and the like
    }
    if (backoff) {
      // co_await is not allowed inside a handler, so the pause happens here.
      net::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await t.async_wait(net::use_awaitable);
    }
  }
}

net::awaitable<void> ticker(ServerState& st, const std::atomic<bool>* stop_flag,
                            net::io_context& ioc) {
  net::steady_timer timer(co_await net::this_coro::executor);
  auto last_tick = std::chrono::steady_clock::now();
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(50));
    try {
      co_await timer.async_wait(net::use_awaitable);
    } catch (const boost::system::system_error&) {
      co_return;
    }
    if (stop_flag && stop_flag->load()) {
      ioc.stop();
      co_return;
    }
    if (std::chrono::steady_clock::now() - last_tick >= secs(st.opts.tick_s)) {
      last_tick = std::chrono::steady_clock::now();
      if (st.on_tick) st.on_tick();
      if (st.hooks.pending && st.hooks.pending()) {
        // The tick changed something (an expired lease requeued a run).
        schedule_commit(st);
        wake_waiters(st);
      }
    }
  }
}

}  // namespace

Status serve(Coordinator& coord, const ServerOptions& opts, const std::atomic<bool>* stop_flag) {
  CommitHooks hooks{[&coord] { return coord.commit_pending(); }, [&coord] { return coord.commit(); }};
  coord.set_group_commit(true);
  Status st = serve_http([&coord](const Request& req) { return coord.handle_request(req); }, opts,
                         coord.options().max_body_bytes, stop_flag, [&coord] { coord.tick(); },
                         hooks);
  // Nothing is left uncommitted once the server stops.
  Status last = coord.commit();
  coord.set_group_commit(false);
  return st.ok() ? last : st;
}

namespace {

Status run_server(ServerState& st, net::io_context& ioc, const std::atomic<bool>* stop_flag) {
  const ServerOptions& opts = st.opts;
  tcp::acceptor acceptor(ioc);
  try {
    auto addr = net::ip::make_address(opts.host);
    tcp::endpoint ep(addr, static_cast<unsigned short>(opts.port));
    acceptor.open(ep.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(net::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    return Status::Unavailable(opts.server_name + ": cannot listen on " + opts.host + ":" +
                               std::to_string(opts.port) + ": " + e.code().message());
  }
  int port = acceptor.local_endpoint().port();
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) ioc.stop();
  });
  net::co_spawn(ioc, listener(acceptor, st), net::detached);
  net::co_spawn(ioc, ticker(st, stop_flag, ioc), net::detached);
  st.pool = std::make_unique<DeferredPool>(opts.deferred_threads, opts.max_deferred);
  if (opts.on_listening) opts.on_listening(port);
  ioc.run();
  // Replies that come later are dropped (the io_context goes away next).
  {
    std::lock_guard<std::mutex> lock(st.gate->mu);
    st.gate->open = false;
  }
  // Interrupts running queries and waits for their threads.
  st.pool.reset();
  return Status::Ok();
}

}  // namespace

Status serve_http(const HttpHandler& handler, const ServerOptions& opts, size_t max_body_bytes,
                  const std::atomic<bool>* stop_flag, const std::function<void()>& on_tick,
                  const CommitHooks& hooks) {
  net::io_context ioc{1};
  net::steady_timer committed(ioc, net::steady_timer::time_point::max());
  ServerState st{&handler, nullptr, on_tick, opts, max_body_bytes, hooks, committed};
  return run_server(st, ioc, stop_flag);
}

Status serve_http_async(const AsyncHttpHandler& handler, const ServerOptions& opts,
                        size_t max_body_bytes, const std::atomic<bool>* stop_flag,
                        const std::function<void()>& on_tick) {
  net::io_context ioc{1};
  net::steady_timer committed(ioc, net::steady_timer::time_point::max());
  const CommitHooks no_hooks;
  ServerState st{nullptr, &handler, on_tick, opts, max_body_bytes, no_hooks, committed};
  return run_server(st, ioc, stop_flag);
}

}  // namespace assay::coordinator
