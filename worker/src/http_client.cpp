#include "http_client.h"

#include <curl/curl.h>

#include <mutex>

#include "assay/json_limits.h"

namespace assay::worker {

namespace {

size_t on_body(char* p, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(p, size * n);
  return size * n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* flag = static_cast<const std::atomic<bool>*>(user);
  return flag && flag->load() ? 1 : 0;  // non-zero aborts the transfer
}

}  // namespace

void http_global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::HttpClient(std::string base_url, std::string token, const std::atomic<bool>* abort_flag)
    : base_(std::move(base_url)), auth_header_("Authorization: Bearer " + token), abort_(abort_flag) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
  http_global_init();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Result<HttpReply> HttpClient::post_json(const std::string& path, const nlohmann::json& body,
                                        double timeout_s) {
  return perform(path, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                 "Content-Type: application/json", timeout_s);
}

Result<HttpReply> HttpClient::post_bytes(const std::string& path, std::string_view bytes,
                                         double timeout_s) {
  return perform(path, bytes, "Content-Type: application/octet-stream", timeout_s);
}

Result<HttpReply> HttpClient::perform(const std::string& path, std::string_view body,
                                      const char* content_type, double timeout_s) {
  auto* c = static_cast<CURL*>(curl_);
  if (!c) return Status::Internal("curl_easy_init failed");
  curl_easy_reset(c);
  std::string url = base_ + path;
  HttpReply reply;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, auth_header_.c_str());
  headers = curl_slist_append(headers, content_type);
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  if (abort_) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, abort_);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return Status::Unavailable("POST " + url + ": " + curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  // The depth limit matters here too: a reply is peer data, and callers
  // dump and copy it.
  auto parsed = parse_json(reply.body, "reply to POST " + path);
  if (parsed.ok()) {
    reply.json = std::move(parsed).value();
  } else {
    reply.json = nullptr;
    reply.json_error = parsed.status().message();
  }
  if (!reply.ok() && reply.json.is_object()) {
    auto e = reply.json.find("error");
    if (e != reply.json.end() && e->is_object()) {
      auto c = e->find("code");
      if (c != e->end() && c->is_string()) reply.error_code = c->get<std::string>();
    }
  }
  return reply;
}

}  // namespace assay::worker
