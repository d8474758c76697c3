// A small blocking HTTP/1.1 client for the coordinator API (keep-alive, one
// connection, reconnects when the server closed it). Used by the CLI, tests
// and benchmarks. Not thread-safe: one client per thread.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/status.h"
#include "assay/url.h"

namespace assay::coordinator {

struct HttpReply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

struct Endpoint {
  std::string host;
  int port = 0;
};
// "http://HOST:PORT[/]" or "HOST:PORT". https is not supported.
Result<Endpoint> parse_coordinator_url(const std::string& url);

class HttpClient {
 public:
  HttpClient(Endpoint ep, std::string token, double timeout_s = 60);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Any status is a successful exchange; only transport failures are errors
  // (Unavailable, naming the address).
  Result<HttpReply> request(const std::string& method, const std::string& target,
                            const std::string& body = "",
                            const std::string& content_type = "application/json");
  // JSON in, JSON out; a non-2xx reply becomes a Status carrying the server's
  // "code: message" (404 -> NotFound, 409 -> FailedPrecondition, 400 ->
  // InvalidArgument, 401/403 -> PermissionDenied, else Unavailable/Internal).
  Result<nlohmann::json> call(const std::string& method, const std::string& target,
                              const nlohmann::json* body = nullptr);

  void set_timeout(double s) { timeout_s_ = s; }

 private:
  struct Conn;
  Status connect();
  Endpoint ep_;
  std::string token_;
  double timeout_s_;
  std::unique_ptr<Conn> conn_;
};

// Percent-encodes a query value.
using ::assay::url_encode;  // percent-encoding, from assay/url.h

}  // namespace assay::coordinator
