// A small blocking HTTP client for the coordinator API (libcurl easy handle,
// keep-alive). One per thread; not thread-safe.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

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
  bool retryable() const { return status == 0 || status >= 500; }
};

class HttpClient {
 public:
  // base_url like "http://127.0.0.1:8700"; token is the bearer token.
  // `abort_flag`, when set, cuts an in-flight request short (shutdown).
  HttpClient(std::string base_url, std::string token, const std::atomic<bool>* abort_flag = nullptr);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // A transport failure (refused, timed out, aborted) is an Unavailable status;
  // any HTTP reply, 4xx/5xx included, is a value.
  Result<HttpReply> post_json(const std::string& path, const nlohmann::json& body,
                              double timeout_s = 15);
  Result<HttpReply> post_bytes(const std::string& path, std::string_view bytes,
                               double timeout_s = 30);

 private:
  Result<HttpReply> perform(const std::string& path, std::string_view body,
                            const char* content_type, double timeout_s);
  std::string base_;
  std::string auth_header_;
  const std::atomic<bool>* abort_;
  void* curl_ = nullptr;
};

// Must run once before any thread creates a client.
void http_global_init();

}  // namespace assay::worker
