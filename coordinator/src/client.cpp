#include <utility>  // before Asio (GCC 12 + Boost 1.74)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>

#include "assay/coord_client.h"
#include "assay/json_limits.h"

namespace assay::coordinator {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct HttpClient::Conn {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  bool open = false;
};

Result<Endpoint> parse_coordinator_url(const std::string& url_in) {
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
  try {
    size_t used = 0;
    ep.port = std::stoi(url.substr(colon + 1), &used);
    if (used != url.size() - colon - 1) throw std::invalid_argument("port");
  } catch (const std::exception&) {
    return Status::Invalid("coordinator url '" + url_in + "': port is not a number");
  }
  if (ep.port <= 0 || ep.port > 65535)
    return Status::Invalid("coordinator url '" + url_in + "': port must be 1..65535");
  return ep;
}

HttpClient::HttpClient(Endpoint ep, std::string token, double timeout_s)
    : ep_(std::move(ep)), token_(std::move(token)), timeout_s_(timeout_s),
      conn_(std::make_unique<Conn>()) {}
HttpClient::~HttpClient() = default;

Status HttpClient::connect() {
  conn_ = std::make_unique<Conn>();
  try {
    tcp::resolver resolver(conn_->ioc);
    auto results = resolver.resolve(ep_.host, std::to_string(ep_.port));
    conn_->stream.expires_after(std::chrono::seconds(10));
    conn_->stream.connect(results);
    conn_->stream.socket().set_option(tcp::no_delay(true));
    conn_->open = true;
  } catch (const boost::system::system_error& e) {
    return Status::Unavailable("coordinator at " + ep_.host + ":" + std::to_string(ep_.port) +
                               " is unreachable: " + e.code().message());
  }
  return Status::Ok();
}

Result<HttpReply> HttpClient::request(const std::string& method, const std::string& target,
                                      const std::string& body, const std::string& content_type) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = conn_->open;
    if (!conn_->open) ASSAY_RETURN_IF_ERROR(connect());
    try {
      http::request<http::string_body> req{http::string_to_verb(method), target, 11};
      req.set(http::field::host, ep_.host);
      req.set(http::field::user_agent, "assay-cli");
      if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
      if (!body.empty() || method == "POST") {
        req.set(http::field::content_type, content_type);
        req.body() = body;
      }
      req.keep_alive(true);
      req.prepare_payload();
      auto to = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(timeout_s_));
      conn_->stream.expires_after(to);
      http::write(conn_->stream, req);
      http::response_parser<http::string_body> parser;
      parser.body_limit(1ull << 30);
      http::read(conn_->stream, conn_->buffer, parser);
      auto& res = parser.get();
      HttpReply out;
      out.status = static_cast<int>(res.result_int());
      out.body = std::move(res.body());
      for (auto& f : res) {
        std::string k(f.name_string());
        std::transform(k.begin(), k.end(), k.begin(), ::tolower);
        out.headers[k] = std::string(f.value());
      }
      if (!res.keep_alive()) conn_->open = false;
      return out;
    } catch (const boost::system::system_error& e) {
      conn_->open = false;
      // A kept-alive connection the server already closed: reconnect once.
      if (reused && attempt == 0 &&
          (e.code() == http::error::end_of_stream || e.code() == net::error::connection_reset ||
           e.code() == net::error::broken_pipe || e.code() == net::error::eof))
        continue;
      return Status::Unavailable("coordinator at " + ep_.host + ":" + std::to_string(ep_.port) +
                                 ": " + method + " " + target + " failed: " + e.code().message());
    }
  }
  return Status::Unavailable("coordinator at " + ep_.host + ": connection closed twice");
}

Result<nlohmann::json> HttpClient::call(const std::string& method, const std::string& target,
                                        const nlohmann::json* body) {
  std::string text = body ? body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                          : std::string();
  ASSAY_ASSIGN_OR_RETURN(auto rep, request(method, target, text));
  // Peer data: the depth limit keeps callers' dumps and copies bounded.
  auto parsed = parse_json(rep.body, "reply to " + method + " " + target);
  if (rep.status >= 200 && rep.status < 300) {
    if (!parsed.ok()) return Status::Corruption(parsed.status().message());
    return std::move(parsed).value();
  }
  std::string msg = "HTTP " + std::to_string(rep.status);
  if (parsed.ok() && parsed->is_object() && parsed->contains("error") &&
      (*parsed)["error"].is_object()) {
    const auto& e = (*parsed)["error"];
    auto text = [&](const char* k, const char* dflt) {
      return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string(dflt);
    };
    msg = text("code", "error") + ": " + text("message", "");
  }
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


}  // namespace assay::coordinator
