// OpenAI-compatible completions backend over libcurl (opened on first use,
// curl_loader.h). See evals_http.h.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <thread>

#include "assay/json_limits.h"
#include "assay/evals_http.h"
#include "curl_loader.h"

namespace assay::evals {
namespace {

size_t write_cb(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

struct HttpReply {
  long status = 0;
  std::string body;
};

// One POST. A non-ok Status means the transfer itself failed (no HTTP reply).
Status post_once(const std::string& url, const std::string& api_key, const std::string& body,
                 double timeout_s, HttpReply* reply) {
  ASSAY_ASSIGN_OR_RETURN(const CurlApi* c, curl_api());
  CURL* h = c->easy_init();
  if (!h) return Status::Internal("curl_easy_init failed");
  struct curl_slist* headers = nullptr;
  headers = c->slist_append(headers, "Content-Type: application/json");
  std::string auth = "Authorization: Bearer " + api_key;
  if (!api_key.empty()) headers = c->slist_append(headers, auth.c_str());
  reply->body.clear();
  // Variadic: each value has the type libcurl reads for its option.
  c->easy_setopt(h, CURLOPT_URL, url.c_str());
  c->easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  c->easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  c->easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  c->easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  c->easy_setopt(h, CURLOPT_WRITEDATA, &reply->body);
  c->easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
  c->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // safe with threads
  CURLcode rc = c->easy_perform(h);
  Status st;
  if (rc != CURLE_OK) {
    st = Status::Unavailable("POST " + url + ": " + c->easy_strerror(rc));
  } else {
    c->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply->status);
  }
  c->slist_free_all(headers);
  c->easy_cleanup(h);
  return st;
}

// The server's error message, if the body is {"error": {"message": ...}} or similar.
std::string server_message(const std::string& body) {
  auto parsed = parse_json(body, "reply");
  const nlohmann::json j = parsed.ok() ? std::move(*parsed) : nlohmann::json();
  if (j.is_object() && j.contains("error")) {
    const auto& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string())
      return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  return body.substr(0, 300);
}

// Runs fn(i) for i in [0, n) on up to `threads` threads; returns the first error.
Status run_parallel(size_t n, int threads, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first;
  auto worker = [&] {
    for (size_t i = next++; i < n && !failed; i = next++) {
      Status st = fn(i);
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failed) first = st;
        failed = true;
      }
    }
  };
  int k = static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), n));
  std::vector<std::thread> pool;
  for (int t = 1; t < k; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return first;
}

// OpenAI fields of the sampling parameters; top_k (a vLLM / llama.cpp
// extension) only when it limits anything.
void add_sampling(const SamplingParams& p, nlohmann::json* body) {
  (*body)["temperature"] = p.temperature;
  (*body)["top_p"] = p.top_p;
  if (p.top_k > 0) (*body)["top_k"] = p.top_k;
  if (p.seed) (*body)["seed"] = *p.seed;
}

const nlohmann::json* first_choice(const nlohmann::json& r) {
  if (!r.is_object() || !r.contains("choices") || !r["choices"].is_array() ||
      r["choices"].empty())
    return nullptr;
  return &r["choices"][0];
}

}  // namespace

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

Result<TokenScores> parse_echo_logprobs(const nlohmann::json& response, int64_t context_chars,
                                        int64_t prompt_chars) {
  const nlohmann::json* choice = first_choice(response);
  if (!choice) return Status::Invalid("completion response has no choices[0]");
  const auto no_echo = Status::FailedPrecondition(
      "completion response lacks logprobs for the echoed prompt; the server must support "
      "\"echo\": true with \"logprobs\" on /v1/completions (chat-only endpoints and some hosted "
      "APIs do not)");
  if (!choice->contains("logprobs") || !(*choice)["logprobs"].is_object()) return no_echo;
  const auto& lp = (*choice)["logprobs"];
  if (!lp.contains("token_logprobs") || !lp["token_logprobs"].is_array()) return no_echo;
  const auto& tlp = lp["token_logprobs"];
  const size_t n = tlp.size();
  // Character offset of each token: text_offset, else running token lengths.
  std::vector<int64_t> offset(n);
  int64_t covered = 0;  // characters spanned by the returned tokens
  if (lp.contains("text_offset") && lp["text_offset"].is_array() && lp["text_offset"].size() == n) {
    for (size_t i = 0; i < n; ++i) offset[i] = lp["text_offset"][i].get<int64_t>();
    covered = n ? offset.back() : 0;  // the generated token starts after the prompt
  } else if (lp.contains("tokens") && lp["tokens"].is_array() && lp["tokens"].size() == n) {
    for (size_t i = 0; i < n; ++i) {
      offset[i] = covered;
      covered += utf8_length(lp["tokens"][i].get<std::string>());
    }
  } else {
    return Status::Invalid(
        "completion response has neither logprobs.text_offset nor logprobs.tokens matching "
        "token_logprobs (" + std::to_string(n) + " entries); cannot locate the continuation");
  }
  // An echoed reply starts at the prompt's first character and reaches its end.
  if (n < 2 || offset[0] != 0 || covered < prompt_chars) return no_echo;
  const bool has_top = lp.contains("top_logprobs") && lp["top_logprobs"].is_array() &&
                       lp["top_logprobs"].size() == n;
  TokenScores out;
  for (size_t i = 0; i < n; ++i) {
    if (offset[i] < context_chars || offset[i] >= prompt_chars) continue;
    if (i == 0 && tlp[i].is_null()) continue;  // the first token is never predicted
    if (!tlp[i].is_number())
      return Status::Invalid("completion response: token_logprobs[" + std::to_string(i) +
                             "] of a continuation token is " + tlp[i].dump());
    double v = tlp[i].get<double>();
    out.logprobs.push_back(v);
    // Greedy when no alternative beat this token (lm-eval compares values).
    uint8_t top = 0;
    if (has_top && lp["top_logprobs"][i].is_object()) {
      double best = -INFINITY;
      for (const auto& [tok, val] : lp["top_logprobs"][i].items())
        if (val.is_number()) best = std::max(best, val.get<double>());
      top = v >= best - 1e-7 * std::max(1.0, std::fabs(best));
    }
    out.is_top.push_back(top);
  }
  if (out.logprobs.empty() && prompt_chars > context_chars)
    return Status::Invalid("completion response: no token starts inside the continuation "
                           "(characters " + std::to_string(context_chars) + ".." +
                           std::to_string(prompt_chars) + "); it merged into the last context "
                           "token");
  return out;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip_suffix(std::string s, const std::string& suffix) {
  if (ends_with(s, suffix)) s.resize(s.size() - suffix.size());
  return s;
}

std::string strip_slashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

std::string server_root(const std::string& base_url) {
  std::string root = strip_suffix(strip_slashes(base_url), "/completions");
  return strip_suffix(strip_slashes(root), "/v1");
}

HttpBackend::HttpBackend(HttpBackendOptions opts) : opts_(std::move(opts)) {
  url_ = strip_slashes(opts_.base_url);
  if (!ends_with(url_, "/completions")) url_ += "/completions";
  bos_ = opts_.bos_text;
}

// One POST <root>/tokenize of the empty prompt with special tokens: a server
// whose tokenizer adds BOS by itself (a checkpoint declaring add_bos_token,
// Llama under vLLM) returns it; GPT-2 returns nothing. Any failure (no such
// route, no server) falls back to "<|endoftext|>", GPT-2's convention.
void HttpBackend::resolve_auto_bos() {
  const std::string url = server_root(opts_.base_url) + "/tokenize";
  const nlohmann::json body{{"model", opts_.model}, {"prompt", ""}, {"add_special_tokens", true}};
  HttpReply reply;
  Status st = post_once(url, opts_.api_key, body.dump(), std::min(opts_.timeout_s, 30.0), &reply);
  bos_ = kDefaultBosText;
  if (!st.ok()) {
    bos_note_ = "tokenize probe failed: " + st.message();
    return;
  }
  if (reply.status != 200) {
    bos_note_ = "tokenize probe: POST " + url + ": HTTP " + std::to_string(reply.status);
    return;
  }
  auto parsed = parse_json(reply.body, "reply");
  const nlohmann::json j = parsed.ok() ? std::move(*parsed) : nlohmann::json();
  if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) {
    bos_note_ = "tokenize probe: POST " + url + ": reply has no \"tokens\" list";
    return;
  }
  if (!j["tokens"].empty()) {
    bos_.clear();
    bos_note_ = "the server adds BOS itself";
  } else {
    bos_note_ = "the server adds no BOS";
  }
}

Result<std::unique_ptr<HttpBackend>> make_http_backend(HttpBackendOptions opts) {
  if (opts.base_url.rfind("http://", 0) != 0 && opts.base_url.rfind("https://", 0) != 0)
    return Status::Invalid("endpoint: expected an http:// or https:// URL, got \"" +
                           opts.base_url + "\"");
  if (opts.model.empty()) return Status::Invalid("endpoint: a model name is required");
  if (opts.concurrency < 1 || opts.concurrency > 256)
    return Status::Invalid("endpoint: concurrency must be 1..256, got " +
                           std::to_string(opts.concurrency));
  if (opts.max_retries < 0)
    return Status::Invalid("endpoint: max_retries must be >= 0, got " +
                           std::to_string(opts.max_retries));
  const bool probe = opts.bos_text == kAutoBosText;
  auto b = std::make_unique<HttpBackend>(std::move(opts));
  if (probe) b->resolve_auto_bos();
  return b;
}

std::string HttpBackend::describe() const {
  std::string d = "openai-completions:" + url_ + " model=" + opts_.model;
  if (opts_.bos_text == kAutoBosText)
    d += " bos_text=auto:" + (bos_.empty() ? std::string("none") : bos_) + " (" + bos_note_ + ")";
  else if (!bos_.empty())
    d += " bos_text=" + bos_;
  return d;
}

Result<nlohmann::json> HttpBackend::post(const nlohmann::json& body) const {
  const std::string payload = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  double delay = opts_.backoff_s;
  Status last;
  for (int attempt = 0; attempt <= opts_.max_retries; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      delay *= 2;
    }
    HttpReply reply;
    Status st = post_once(url_, opts_.api_key, payload, opts_.timeout_s, &reply);
    if (!st.ok()) {
      last = st;
      continue;
    }
    if (reply.status == 429 || reply.status >= 500) {
      last = Status::Unavailable("POST " + url_ + ": HTTP " + std::to_string(reply.status) +
                                 ": " + server_message(reply.body));
      continue;
    }
    if (reply.status != 200)
      return Status::Invalid("POST " + url_ + ": HTTP " + std::to_string(reply.status) + ": " +
                             server_message(reply.body));
    auto j = parse_json(reply.body, "POST " + url_ + ": reply");
    if (!j.ok())
      return Status::Corruption(j.status().message() + ": " + reply.body.substr(0, 200));
    return std::move(*j);
  }
  return last.with_context("after " + std::to_string(opts_.max_retries + 1) + " attempts");
}

Result<std::vector<TokenScores>> HttpBackend::score(const std::vector<ScoreRequest>& reqs) {
  std::vector<TokenScores> out(reqs.size());
  Status st = run_parallel(reqs.size(), opts_.concurrency, [&](size_t i) -> Status {
    std::string context = reqs[i].context;
    if (context.empty()) context = bos_;
    const std::string prompt = context + reqs[i].continuation;
    nlohmann::json body{{"model", opts_.model}, {"prompt", prompt}, {"max_tokens", 1},
                        {"logprobs", 1},        {"echo", true},     {"temperature", 0}};
    auto r = post(body);
    if (!r.ok()) return r.status().with_context("score request " + std::to_string(i));
    auto parsed = parse_echo_logprobs(*r, utf8_length(context), utf8_length(prompt));
    if (!parsed.ok()) return parsed.status().with_context("score request " + std::to_string(i));
    out[i] = std::move(parsed).value();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<std::string>> HttpBackend::generate(const std::vector<GenRequest>& reqs) {
  std::vector<std::string> out(reqs.size());
  Status st = run_parallel(reqs.size(), opts_.concurrency, [&](size_t i) -> Status {
    nlohmann::json body{{"model", opts_.model},
                        {"prompt", reqs[i].prompt},
                        {"max_tokens", reqs[i].max_tokens}};
    add_sampling(reqs[i].sampling, &body);
    // OpenAI accepts at most 4 stop strings; the rest are applied locally.
    std::vector<std::string> stop;
    for (const auto& s : reqs[i].stop)
      if (!s.empty() && stop.size() < 4) stop.push_back(s);
    if (!stop.empty()) body["stop"] = stop;
    auto r = post(body);
    if (!r.ok()) return r.status().with_context("generate request " + std::to_string(i));
    const nlohmann::json* choice = first_choice(*r);
    if (!choice || !choice->contains("text") || !(*choice)["text"].is_string())
      return Status::Invalid("generate request " + std::to_string(i) +
                             ": completion response has no choices[0].text");
    out[i] = truncate_at_stop((*choice)["text"].get<std::string>(), reqs[i].stop);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

}  // namespace assay::evals
