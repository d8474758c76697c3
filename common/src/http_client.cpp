#include <utility>  // before Asio (GCC 12 + Boost 1.74)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "assay/http_client.h"
#include "assay/json_limits.h"
#include "assay/version.h"

namespace assay::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

struct Client::Conn {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  bool open = false;
};

namespace {

// How often an in-flight exchange looks at the abort flag.
constexpr auto kAbortPoll = std::chrono::milliseconds(50);
// The largest reply body read (a query result, a log tail).
constexpr uint64_t kMaxReplyBody = uint64_t{1} << 30;

std::string secs(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g s", s);
  return b;
}

std::chrono::steady_clock::duration duration_of(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

// Runs `ioc` until `*done`. When the abort flag rises, calls `cancel` once;
// the pending operation then completes with operation_aborted. Returns
// whether it cancelled.
bool drive(net::io_context& ioc, const bool* done, const std::atomic<bool>* abort,
           const std::function<void()>& cancel) {
  ioc.restart();
  bool cancelled = false;
  while (!*done) {
    ioc.run_for(kAbortPoll);
    if (!*done && !cancelled && abort && abort->load()) {
      cancelled = true;
      cancel();
    }
  }
  return cancelled;
}

// A kept-alive connection that the server had already closed.
bool stale_connection(const error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == net::error::eof;
}

std::string excerpt(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // UTF-8 boundary
  return std::string(s.substr(0, n)) + "...";
}

}  // namespace

std::string Endpoint::url() const { return "http://" + host + ":" + std::to_string(port); }

Result<Endpoint> parse_url(const std::string& url_in) {
  std::string url = url_in;
  if (url.rfind("https://", 0) == 0)
    return Status::Invalid("coordinator url " + url_in + ": https is not supported; use http://");
  if (url.rfind("http://", 0) == 0) url = url.substr(7);
  while (!url.empty() && url.back() == '/') url.pop_back();
  size_t colon = url.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == url.size())
    return Status::Invalid("coordinator url '" + url_in + "': expected http://HOST:PORT");
  Endpoint ep;
  ep.host = url.substr(0, colon);
  const std::string port = url.substr(colon + 1);
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return Status::Invalid("coordinator url '" + url_in + "': port is not a number");
  ep.port = std::stoi(port);
  if (ep.port <= 0 || ep.port > 65535)
    return Status::Invalid("coordinator url '" + url_in + "': port must be 1..65535");
  return ep;
}

ServerError server_error(std::string_view body) {
  ServerError out;
  auto parsed = parse_json(body, "error reply");
  if (!parsed.ok() || !parsed->is_object()) return out;
  auto e = parsed->find("error");
  if (e == parsed->end() || !e->is_object()) return out;
  auto text = [&](const char* k) {
    auto f = e->find(k);
    return f != e->end() && f->is_string() ? f->get<std::string>() : std::string();
  };
  out.code = text("code");
  out.message = text("message");
  return out;
}

Status reply_status(const std::string& method, const std::string& url, const Reply& rep) {
  std::string msg = method + " " + url + ": HTTP " + std::to_string(rep.status);
  const ServerError e = server_error(rep.body);
  if (!e.code.empty()) msg += " " + e.code;
  if (!e.message.empty()) msg += ": " + e.message;
  else if (e.code.empty() && !rep.body.empty()) msg += ": " + excerpt(rep.body, 200);
  switch (rep.status) {
    case 400: return Status::Invalid(msg);
    case 401:
    case 403: return Status::PermissionDenied(msg);
    case 404: return Status::NotFound(msg);
    case 409: return Status::FailedPrecondition(msg);
    case 503: return Status::Unavailable(msg);
    default: return Status::Internal(msg);
  }
}

Client::Client(Endpoint ep, std::string token, Options opts)
    : ep_(std::move(ep)), token_(std::move(token)), opts_(std::move(opts)),
      conn_(std::make_unique<Conn>()) {}
Client::Client(Endpoint ep, std::string token, double timeout_s)
    : Client(std::move(ep), std::move(token), Options{timeout_s}) {}
Client::~Client() = default;

Status Client::connect(const std::string& what) {
  conn_ = std::make_unique<Conn>();
  Conn& c = *conn_;
  tcp::resolver resolver(c.ioc);
  error_code ec;
  bool done = false;
  tcp::resolver::results_type results;
  resolver.async_resolve(ep_.host, std::to_string(ep_.port),
                         [&](const error_code& e, tcp::resolver::results_type r) {
                           ec = e;
                           results = std::move(r);
                           done = true;
                         });
  if (drive(c.ioc, &done, opts_.abort, [&] { resolver.cancel(); }))
    return Status::Unavailable(what + ": aborted");
  if (ec) return Status::Unavailable(what + ": cannot resolve " + ep_.host + ": " + ec.message());
  done = false;
  c.stream.expires_after(duration_of(opts_.connect_timeout_s));
  c.stream.async_connect(results, [&](const error_code& e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  if (drive(c.ioc, &done, opts_.abort, [&] { c.stream.cancel(); }))
    return Status::Unavailable(what + ": aborted");
  if (ec == beast::error::timeout)
    return Status::Unavailable(what + ": cannot connect within " + secs(opts_.connect_timeout_s));
  if (ec) return Status::Unavailable(what + ": cannot connect: " + ec.message());
  c.stream.socket().set_option(tcp::no_delay(true), ec);
  c.open = true;
  return Status::Ok();
}

Result<Reply> Client::request(const std::string& method, const std::string& target,
                              std::string_view body, const std::string& content_type,
                              double timeout_s) {
  const std::string what = method + " " + url(target);
  if (timeout_s <= 0) timeout_s = opts_.timeout_s;
  const bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown) return Status::Invalid(what + ": unknown HTTP method");
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = conn_ && conn_->open;
    if (!reused) ASSAY_RETURN_IF_ERROR(connect(what));
    Conn& c = *conn_;
    bhttp::request<bhttp::string_body> req{verb, target, 11};
    req.set(bhttp::field::host, ep_.host);
    req.set(bhttp::field::user_agent,
            opts_.user_agent.empty() ? std::string("assay/") + kVersion : opts_.user_agent);
    if (!token_.empty()) req.set(bhttp::field::authorization, "Bearer " + token_);
    if (!body.empty() || verb == bhttp::verb::post) {
      req.set(bhttp::field::content_type, content_type);
      req.body() = std::string(body);
    }
    req.keep_alive(true);
    req.prepare_payload();
    // One deadline for sending the request and reading the whole reply.
    c.stream.expires_after(duration_of(timeout_s));
    error_code ec;
    bool done = false;
    auto cancel = [&] { c.stream.cancel(); };
    bhttp::async_write(c.stream, req, [&](const error_code& e, size_t) {
      ec = e;
      done = true;
    });
    bool aborted = drive(c.ioc, &done, opts_.abort, cancel);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(kMaxReplyBody);
    if (!ec && !aborted) {
      done = false;
      bhttp::async_read(c.stream, c.buffer, parser, [&](const error_code& e, size_t) {
        ec = e;
        done = true;
      });
      aborted = drive(c.ioc, &done, opts_.abort, cancel);
    }
    if (aborted) {
      c.open = false;
      return Status::Unavailable(what + ": aborted");
    }
    if (ec) {
      c.open = false;
      if (ec == beast::error::timeout) return Status::Unavailable(what + ": no reply within " + secs(timeout_s));
      if (reused && attempt == 0 && stale_connection(ec) && !parser.got_some()) continue;
      return Status::Unavailable(what + ": " + ec.message());
    }
    auto& res = parser.get();
    Reply out;
    out.status = static_cast<int>(res.result_int());
    out.body = std::move(res.body());
    for (auto& f : res) {
      std::string k(f.name_string());
      std::transform(k.begin(), k.end(), k.begin(), [](unsigned char ch) { return std::tolower(ch); });
      out.headers[k] = std::string(f.value());
    }
    if (!res.keep_alive()) c.open = false;
    return out;
  }
  return Status::Unavailable(what + ": the server closed the connection twice before replying");
}

Result<nlohmann::json> Client::call(const std::string& method, const std::string& target,
                                    const nlohmann::json* body) {
  const std::string text =
      body ? body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : std::string();
  ASSAY_ASSIGN_OR_RETURN(Reply rep, request(method, target, text));
  if (rep.status < 200 || rep.status >= 300) return reply_status(method, url(target), rep);
  // Peer data: the depth limit keeps callers' dumps and copies bounded.
  auto parsed = parse_json(rep.body, "reply to " + method + " " + url(target));
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  return std::move(parsed).value();
}

}  // namespace assay::http
