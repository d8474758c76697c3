// OpenAI-compatible request parsing and the routes that need no inference
// (models, health, vLLM's tokenize / detokenize / tokenizer_info), over a
// NativeBackend. Transport-free: `assay serve` routes HTTP requests here
// through CompletionServer (serve_batch.cpp).
#include <cmath>
#include <optional>

#include "assay/json_limits.h"
#include "assay/evals_http.h"
#include "assay/evals_native.h"
#include "serve_internal.h"

namespace assay::evals::serve {

namespace {

using json = nlohmann::json;

bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// A 404 when the body names a model other than the one served.
std::optional<ApiReply> check_model(const json& j, const std::string& model_name) {
  if (present(j, "model") && (!j["model"].is_string() || j["model"].get<std::string>() != model_name))
    return error_reply(404, "model " + j["model"].dump() + " does not exist; this server serves \"" +
                                model_name + "\"", "model");
  return std::nullopt;
}

// Token ids 0..V-1 of the MODEL (a checkpoint may pad its vocabulary past the tokenizer's).
bool ids_of(const json& arr, int V, std::vector<int32_t>* ids) {
  if (!arr.is_array()) return false;
  for (const auto& e : arr) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= V) return false;
    ids->push_back(static_cast<int32_t>(e.get<int64_t>()));
  }
  return true;
}

std::optional<ApiReply> parse_prompts(const json& p, const NativeBackend& be, Completion* out) {
  const engine::Tokenizer& tok = be.tokenizer();
  const int V = be.config().vocab_size;
  auto add_text = [&](const std::string& s) {
    out->prompts.push_back(be.encode_prompt(s));
    out->prompt_texts.push_back(s);
    out->bos_added.push_back(tok.add_bos_token());
  };
  // Token-id prompts are taken as given: no [bos] is added.
  auto add_ids = [&](std::vector<int32_t> ids) {
    out->prompt_texts.push_back(tok.decode(ids));
    out->prompts.push_back(std::move(ids));
    out->bos_added.push_back(false);
  };
  const std::string bad_prompt =
      "prompt must be a string, a list of token ids (0.." + std::to_string(V - 1) +
      ", the model's vocabulary), or a non-empty list of strings or of token-id lists";
  if (p.is_string()) {
    add_text(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    std::vector<int32_t> ids;
    if (!ids_of(p, V, &ids)) return error_reply(400, bad_prompt, "prompt");
    add_ids(std::move(ids));
  } else if (p.is_array() && !p.empty()) {
    for (const auto& e : p) {
      std::vector<int32_t> ids;
      if (e.is_string()) add_text(e.get<std::string>());
      else if (ids_of(e, V, &ids)) add_ids(std::move(ids));
      else return error_reply(400, bad_prompt, "prompt");
    }
  } else {
    return error_reply(400, bad_prompt, "prompt");
  }
  return std::nullopt;
}

// Reads an optional number field within [lo, hi]; the 400 otherwise.
std::optional<ApiReply> read_number(const json& j, const char* key, double lo, double hi,
                                    const std::string& range, double* out) {
  if (!present(j, key)) return std::nullopt;
  if (!j[key].is_number() || !(j[key].get<double>() >= lo) || !(j[key].get<double>() <= hi))
    return error_reply(400, std::string(key) + " must be a number " + range + ", got " + j[key].dump(),
                       key);
  *out = j[key].get<double>();
  return std::nullopt;
}

std::optional<ApiReply> read_int(const json& j, const char* key, int64_t lo, int64_t hi,
                                 const std::string& range, int* out) {
  if (!present(j, key)) return std::nullopt;
  if (!j[key].is_number_integer() || j[key].get<int64_t>() < lo || j[key].get<int64_t>() > hi)
    return error_reply(400, std::string(key) + " must be an integer " + range + ", got " +
                                j[key].dump(), key);
  *out = static_cast<int>(j[key].get<int64_t>());
  return std::nullopt;
}

std::optional<ApiReply> parse_sampling(const json& j, Completion* out) {
  SamplingParams& sp = out->sampling;
  if (auto e = read_number(j, "temperature", 0, 2, "in [0, 2]", &sp.temperature)) return e;
  if (present(j, "top_p") && j["top_p"].is_number() && j["top_p"].get<double>() <= 0)
    return error_reply(400, "top_p must be a number in (0, 1], got " + j["top_p"].dump(), "top_p");
  if (auto e = read_number(j, "top_p", 0, 1, "in (0, 1]", &sp.top_p)) return e;
  // top_k is vLLM's extension; -1 (vLLM's "off") and 0 both mean no limit.
  int top_k = 0;
  if (auto e = read_int(j, "top_k", -1, 1 << 30, ">= -1 (-1 or 0: no limit)", &top_k)) return e;
  sp.top_k = std::max(0, top_k);
  if (present(j, "seed")) {
    if (!j["seed"].is_number_integer())
      return error_reply(400, "seed must be an integer, got " + j["seed"].dump(), "seed");
    sp.seed = j["seed"].is_number_unsigned() ? j["seed"].get<uint64_t>()
                                             : static_cast<uint64_t>(j["seed"].get<int64_t>());
  }
  if (auto e = read_int(j, "n", 1, 128, "in 1..128", &out->n)) return e;
  if (present(j, "best_of") && j["best_of"] != out->n)
    return error_reply(400, "best_of is not supported (only best_of = n), got " + j["best_of"].dump(),
                       "best_of");
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (present(j, key) && (!j[key].is_number() || j[key].get<double>() != 0))
      return error_reply(400, std::string(key) + " is not supported (only 0), got " + j[key].dump(),
                         key);
  if (present(j, "logit_bias") && !(j["logit_bias"].is_object() && j["logit_bias"].empty()))
    return error_reply(400, "logit_bias is not supported", "logit_bias");
  if (present(j, "stream") && j["stream"] != false)
    return error_reply(400, "stream is not supported (only false)", "stream");
  return std::nullopt;
}

}  // namespace

ApiReply error_reply(int status, const std::string& message, const std::string& param,
                     const std::string& type) {
  json e{{"message", message}, {"type", type}, {"code", nullptr}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  return {status, json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace)};
}

std::optional<ApiReply> parse_completion(const std::string& body, const NativeBackend& be,
                                         const std::string& model_name, Completion* out) {
  auto parsed = parse_json(body, "request body");
  if (!parsed.ok()) return error_reply(400, parsed.status().message());
  const json& j = *parsed;
  if (!j.is_object()) return error_reply(400, "request body must be a JSON object");
  if (auto e = check_model(j, model_name)) return e;
  if (!j.contains("prompt")) return error_reply(400, "missing field \"prompt\"", "prompt");
  if (auto e = parse_prompts(j["prompt"], be, out)) return e;
  // lm-eval's HF rule: the prompt keeps its last n_positions - max_tokens tokens.
  const int P = be.config().n_positions;
  if (auto e = read_int(j, "max_tokens", 0, P - 1,
                        "in 0.." + std::to_string(P - 1) + " (below the model's n_positions " +
                            std::to_string(P) + ")",
                        &out->max_tokens))
    return e;
  out->max_tokens = std::min(out->max_tokens, P - 1);  // the default 16 on a tiny model
  if (auto e = parse_sampling(j, out)) return e;
  if (present(j, "stop")) {
    const json& s = j["stop"];
    const char* msg = "stop must be a string or a list of strings";
    if (s.is_string()) {
      out->stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& e : s) {
        if (!e.is_string()) return error_reply(400, msg, "stop");
        out->stop.push_back(e.get<std::string>());
      }
    } else {
      return error_reply(400, msg, "stop");
    }
  }
  if (present(j, "echo")) {
    if (!j["echo"].is_boolean()) return error_reply(400, "echo must be a boolean", "echo");
    out->echo = j["echo"].get<bool>();
  }
  int lp = 0;
  if (auto e = read_int(j, "logprobs", 0, 20, "in 0..20", &lp)) return e;
  if (present(j, "logprobs")) out->logprobs = lp;
  return std::nullopt;
}

namespace {

// vLLM's POST /tokenize: {"prompt", "add_special_tokens" (default true),
// "return_token_strs"} -> {"count", "max_model_len", "tokens", "token_strs"}.
ApiReply tokenize(const NativeBackend& be, const std::string& model_name, const json& j) {
  if (auto e = check_model(j, model_name)) return *e;
  if (j.contains("messages"))
    return error_reply(400, "chat messages are not served; send \"prompt\"", "messages");
  if (!j.contains("prompt") || !j["prompt"].is_string())
    return error_reply(400, "prompt must be a string", "prompt");
  bool special = true;
  if (present(j, "add_special_tokens")) {
    if (!j["add_special_tokens"].is_boolean())
      return error_reply(400, "add_special_tokens must be a boolean", "add_special_tokens");
    special = j["add_special_tokens"].get<bool>();
  }
  const std::string text = j["prompt"].get<std::string>();
  // add_special_tokens: the checkpoint's convention ([bos] first when it
  // declares add_bos_token), as a Hugging Face tokenizer applies it.
  std::vector<int32_t> ids = special ? be.encode_prompt(text) : be.tokenizer().encode(text, true);
  json r{{"count", ids.size()},
         {"max_model_len", be.config().n_positions},
         {"tokens", ids},
         {"token_strs", nullptr}};
  if (present(j, "return_token_strs") && j["return_token_strs"] == true) {
    json strs = json::array();
    for (int32_t id : ids) strs.push_back(be.tokenizer().decode(std::span<const int32_t>(&id, 1)));
    r["token_strs"] = strs;
  }
  return {200, r.dump(-1, ' ', false, json::error_handler_t::replace)};
}

// vLLM's POST /detokenize: {"tokens"} -> {"prompt"}.
ApiReply detokenize(const NativeBackend& be, const std::string& model_name, const json& j) {
  if (auto e = check_model(j, model_name)) return *e;
  const int V = be.config().vocab_size;
  std::vector<int32_t> ids;
  if (!j.contains("tokens") || !ids_of(j["tokens"], V, &ids))
    return error_reply(400, "tokens must be a list of token ids 0.." + std::to_string(V - 1),
                       "tokens");
  return {200, json{{"prompt", be.tokenizer().decode(ids)}}.dump(-1, ' ', false,
                                                                  json::error_handler_t::replace)};
}

// vLLM's GET /tokenizer_info, which lm-eval's remote tokenizer reads
// (eos_token, bos_token, pad_token, chat_template).
ApiReply tokenizer_info(const NativeBackend& be) {
  const engine::Tokenizer& tok = be.tokenizer();
  auto str = [&](int32_t id) { return tok.decode(std::span<const int32_t>(&id, 1)); };
  json r{{"tokenizer_class", tok.kind()},
         {"eos_token", str(tok.eos_id())},
         {"bos_token", str(tok.bos_id())},
         {"pad_token", nullptr},
         {"add_bos_token", tok.add_bos_token()},
         {"add_eos_token", false},
         {"model_max_length", be.config().n_positions},
         {"vocab_size", tok.vocab_size()}};
  return {200, r.dump(-1, ' ', false, json::error_handler_t::replace)};
}

}  // namespace

std::optional<ApiReply> answer_light(const NativeBackend& be, const std::string& model_name,
                                     const std::string& method, const std::string& target,
                                     const std::string& body) {
  std::string path = target.substr(0, target.find('?'));
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto want = [&](const char* m) -> std::optional<ApiReply> {
    if (method != m) return error_reply(405, method + " " + path + ": use " + m);
    return std::nullopt;
  };
  if (path == "/v1/models" || path == "/health") {
    if (auto e = want("GET")) return e;
    if (path == "/health") return ApiReply{200, "{\"ok\":true}"};
    json m{{"id", model_name},
           {"object", "model"},
           {"created", 0},
           {"owned_by", "assay"},
           {"max_model_len", be.config().n_positions},
           {"checkpoint_hash", be.checkpoint_hash()}};
    return ApiReply{200, json{{"object", "list"}, {"data", json::array({m})}}.dump()};
  }
  if (path == "/tokenizer_info" || path == "/v1/tokenizer_info") {
    if (auto e = want("GET")) return e;
    return tokenizer_info(be);
  }
  if (path == "/tokenize" || path == "/detokenize" || path == "/v1/tokenize" ||
      path == "/v1/detokenize") {
    if (auto e = want("POST")) return e;
    auto parsed = parse_json(body, "request body");
    if (!parsed.ok()) return error_reply(400, parsed.status().message());
    const json& j = *parsed;
    if (!j.is_object()) return error_reply(400, "request body must be a JSON object");
    return path.ends_with("/tokenize") ? tokenize(be, model_name, j) : detokenize(be, model_name, j);
  }
  if (path == "/v1/completions") {
    if (auto e = want("POST")) return e;
    return std::nullopt;
  }
  if (path == "/v1/chat/completions")
    return error_reply(404, "chat completions are not served; use POST /v1/completions");
  return error_reply(404, "unknown path " + path +
                              " (served: GET /v1/models, POST /v1/completions, POST /tokenize, "
                              "POST /detokenize, GET /tokenizer_info, GET /health)");
}

}  // namespace assay::evals::serve

namespace assay::evals {

ApiReply handle_openai_request(NativeBackend& backend, const std::string& model_name,
                               const std::string& method, const std::string& target,
                               const std::string& body) {
  if (auto r = serve::answer_light(backend, model_name, method, target, body)) return *r;
  serve::Completion c;
  if (auto e = serve::parse_completion(body, backend, model_name, &c)) return *e;
  return serve::run_completions(backend, model_name, {&c})[0];
}

}  // namespace assay::evals
