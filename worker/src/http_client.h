// The worker's calls to the coordinator: POSTs whose every reply, 4xx/5xx
// included, is a value the caller classifies (deliver, retry, drop), over
// the one HTTP client of assay/http_client.h (its header describes the
// transport errors and timeouts). One per thread; not thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "assay/http_client.h"
#include "assay/status.h"

namespace assay::worker {

struct HttpReply {
  long status = 0;          // HTTP status; 0 when no reply arrived
  std::string body;
  nlohmann::json json;      // parsed body (null when not JSON)
  std::string error_code;   // "error.code" of an error body, if any
  std::string json_error;   // why the body is not JSON (empty when it is)

  bool ok() const { return status >= 200 && status < 300; }
  // 5xx: the coordinator asked to retry later.
  bool retryable() const { return status == 0 || http::reply_is_retryable(static_cast<int>(status)); }
};

class HttpClient {
 public:
  // base_url like "http://127.0.0.1:8700"; token is the bearer token.
  // `abort_flag`, when set, cuts an in-flight request short (shutdown).
  HttpClient(std::string base_url, std::string token, const std::atomic<bool>* abort_flag = nullptr);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // A transport failure (refused, timed out, aborted) is an Unavailable status
  // naming POST and the URL; any HTTP reply, 4xx/5xx included, is a value.
  Result<HttpReply> post_json(const std::string& path, const nlohmann::json& body,
                              double timeout_s = 15);
  Result<HttpReply> post_bytes(const std::string& path, std::string_view bytes,
                               double timeout_s = 30);

 private:
  Result<HttpReply> perform(const std::string& path, std::string_view body,
                            const std::string& content_type, double timeout_s);
  Status bad_url_;  // a base_url that does not parse: every call returns it
  std::unique_ptr<http::Client> client_;
};


}  // namespace assay::worker
