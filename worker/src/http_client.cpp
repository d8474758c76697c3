#include "http_client.h"

#include "assay/json_limits.h"
#include "assay/version.h"

namespace assay::worker {

namespace {

// The worker fails over to its spool quickly when the coordinator is away.
constexpr double kConnectTimeoutS = 3;

}  // namespace

HttpClient::HttpClient(std::string base_url, std::string token, const std::atomic<bool>* abort_flag) {
  auto ep = http::parse_url(base_url);
  if (!ep.ok()) {
    bad_url_ = ep.status();
    return;
  }
  http::Options opts;
  opts.connect_timeout_s = kConnectTimeoutS;
  opts.abort = abort_flag;
  opts.user_agent = std::string("assay-worker/") + kVersion;
  client_ = std::make_unique<http::Client>(*ep, std::move(token), opts);
}

HttpClient::~HttpClient() = default;

Result<HttpReply> HttpClient::post_json(const std::string& path, const nlohmann::json& body,
                                        double timeout_s) {
  return perform(path, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                 "application/json", timeout_s);
}

Result<HttpReply> HttpClient::post_bytes(const std::string& path, std::string_view bytes,
                                         double timeout_s) {
  return perform(path, bytes, "application/octet-stream", timeout_s);
}

Result<HttpReply> HttpClient::perform(const std::string& path, std::string_view body,
                                      const std::string& content_type, double timeout_s) {
  if (!client_) return bad_url_;
  ASSAY_ASSIGN_OR_RETURN(http::Reply rep, client_->request("POST", path, body, content_type, timeout_s));
  HttpReply reply;
  reply.status = rep.status;
  reply.body = std::move(rep.body);
  // The depth limit matters here too: a reply is peer data, and callers
  // dump and copy it.
  auto parsed = parse_json(reply.body, "reply to POST " + client_->url(path));
  if (parsed.ok()) {
    reply.json = std::move(parsed).value();
  } else {
    reply.json = nullptr;
    reply.json_error = parsed.status().message();
  }
  if (!reply.ok()) reply.error_code = http::server_error(reply.body).code;
  return reply;
}

}  // namespace assay::worker
