// OpenAI-compatible /v1/completions and /v1/models over a NativeBackend.
// Transport-free: `assay serve` routes HTTP requests here.
#include <chrono>
#include <cmath>
#include <optional>

#include "assay/evals_http.h"
#include "assay/evals_native.h"

namespace assay::evals {

namespace {

using json = nlohmann::json;

ApiReply error_reply(int status, const std::string& message, const std::string& param = "",
                     const std::string& type = "invalid_request_error") {
  json e{{"message", message}, {"type", type}, {"code", nullptr}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  return {status, json{{"error", e}}.dump()};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// A validated completions request.
struct CompletionRequest {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;  // as sent, or decoded from ids
  int max_tokens = 16;
  std::vector<std::string> stop;
  bool echo = false;
  std::optional<int> logprobs;
};

// Fills `out` from the JSON body; the error reply otherwise.
std::optional<ApiReply> parse_request(const json& j, const NativeBackend& be,
                                      const std::string& model_name, CompletionRequest* out) {
  if (!j.is_object()) return error_reply(400, "request body must be a JSON object");
  if (j.contains("model") && !j["model"].is_null() &&
      (!j["model"].is_string() || j["model"].get<std::string>() != model_name))
    return error_reply(404, "model " + j["model"].dump() + " does not exist; this server serves \"" +
                                model_name + "\"", "model");
  if (!j.contains("prompt")) return error_reply(400, "missing field \"prompt\"", "prompt");
  const json& p = j["prompt"];
  const engine::Tokenizer& tok = be.tokenizer();
  const int V = be.tokenizer().vocab_size();
  auto ids_of = [&](const json& arr, std::vector<int32_t>* ids) -> bool {
    for (const auto& e : arr) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= V) return false;
      ids->push_back(static_cast<int32_t>(e.get<int64_t>()));
    }
    return true;
  };
  auto add_text = [&](const std::string& s) {
    out->prompts.push_back(tok.encode(s, true));
    out->prompt_texts.push_back(s);
  };
  const std::string bad_prompt =
      "prompt must be a string, a list of token ids (0.." + std::to_string(V - 1) +
      "), or a non-empty list of strings or of token-id lists";
  if (p.is_string()) {
    add_text(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    std::vector<int32_t> ids;
    if (!ids_of(p, &ids)) return error_reply(400, bad_prompt, "prompt");
    out->prompt_texts.push_back(tok.decode(ids));
    out->prompts.push_back(std::move(ids));
  } else if (p.is_array() && !p.empty()) {
    for (const auto& e : p) {
      if (e.is_string()) {
        add_text(e.get<std::string>());
      } else if (e.is_array()) {
        std::vector<int32_t> ids;
        if (!ids_of(e, &ids)) return error_reply(400, bad_prompt, "prompt");
        out->prompt_texts.push_back(tok.decode(ids));
        out->prompts.push_back(std::move(ids));
      } else {
        return error_reply(400, bad_prompt, "prompt");
      }
    }
  } else {
    return error_reply(400, bad_prompt, "prompt");
  }
  if (j.contains("max_tokens") && !j["max_tokens"].is_null()) {
    if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 0 ||
        j["max_tokens"].get<int64_t>() > 1000000)
      return error_reply(400, "max_tokens must be an integer >= 0, got " + j["max_tokens"].dump(),
                         "max_tokens");
    out->max_tokens = j["max_tokens"].get<int>();
  }
  if (j.contains("temperature") && !j["temperature"].is_null()) {
    if (!j["temperature"].is_number() || j["temperature"].get<double>() != 0.0)
      return error_reply(400, "temperature: only 0 (greedy decoding) is supported, got " +
                                  j["temperature"].dump(), "temperature");
  }
  if (j.contains("n") && !j["n"].is_null() && j["n"] != 1)
    return error_reply(400, "n: only 1 completion per prompt is supported, got " + j["n"].dump(), "n");
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      out->stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& e : s) {
        if (!e.is_string()) return error_reply(400, "stop must be a string or a list of strings", "stop");
        out->stop.push_back(e.get<std::string>());
      }
    } else {
      return error_reply(400, "stop must be a string or a list of strings", "stop");
    }
  }
  if (j.contains("echo") && !j["echo"].is_null()) {
    if (!j["echo"].is_boolean()) return error_reply(400, "echo must be a boolean", "echo");
    out->echo = j["echo"].get<bool>();
  }
  if (j.contains("logprobs") && !j["logprobs"].is_null()) {
    if (!j["logprobs"].is_number_integer() || j["logprobs"].get<int64_t>() < 0 ||
        j["logprobs"].get<int64_t>() > 20)
      return error_reply(400, "logprobs must be an integer 0..20, got " + j["logprobs"].dump(),
                         "logprobs");
    out->logprobs = j["logprobs"].get<int>();
  }
  return std::nullopt;
}

// Accumulates the logprobs block token by token.
struct LogprobsBlock {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  int64_t chars = 0;  // code points so far
  void add(const engine::Tokenizer& tok, int32_t id, const TokenLogprob* s) {
    const std::string text = tok.decode(std::span<const int32_t>(&id, 1));
    tokens.push_back(text);
    offsets.push_back(chars);
    chars += utf8_length(text);
    if (!s) {
      token_logprobs.push_back(nullptr);
      top.push_back(nullptr);
      return;
    }
    token_logprobs.push_back(s->logprob);
    const int32_t t = s->top_token;
    top.push_back(json{{tok.decode(std::span<const int32_t>(&t, 1)), s->top_logprob}});
  }
  json to_json() const {
    return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top},
            {"text_offset", offsets}};
  }
};

ApiReply completions(NativeBackend& be, const std::string& model_name, const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return error_reply(400, "request body is not valid JSON");
  CompletionRequest req;
  if (auto err = parse_request(j, be, model_name, &req)) return *err;
  const size_t n = req.prompts.size();
  // Prompt scores are needed only for echo with logprobs.
  std::vector<std::vector<TokenLogprob>> prompt_scores(n);
  if (req.echo && req.logprobs) {
    std::vector<std::vector<int32_t>> seqs;
    std::vector<size_t> which;
    for (size_t i = 0; i < n; ++i)
      if (req.prompts[i].size() >= 2) {
        seqs.push_back(req.prompts[i]);
        which.push_back(i);
      }
    auto s = be.score_tokens(seqs, std::vector<int64_t>(seqs.size(), 1));
    if (!s.ok()) return error_reply(400, s.status().message(), "prompt");
    for (size_t k = 0; k < which.size(); ++k) prompt_scores[which[k]] = std::move((*s)[k]);
  }
  std::vector<Generation> gens(n);
  if (req.max_tokens > 0) {
    auto g = be.generate_tokens(req.prompts, req.max_tokens, req.stop);
    if (!g.ok()) return error_reply(400, g.status().message());
    gens = std::move(g).value();
  } else {
    for (auto& g : gens) g.finish_reason = "length";
  }
  const engine::Tokenizer& tok = be.tokenizer();
  json choices = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    const Generation& g = gens[i];
    json c{{"index", i}, {"finish_reason", g.finish_reason}};
    c["text"] = (req.echo ? req.prompt_texts[i] : std::string()) + g.text;
    prompt_tokens += static_cast<int64_t>(req.prompts[i].size());
    completion_tokens += static_cast<int64_t>(g.tokens.size());
    if (req.logprobs) {
      LogprobsBlock lp;
      if (req.echo) {
        for (size_t t = 0; t < req.prompts[i].size(); ++t)
          lp.add(tok, req.prompts[i][t], t == 0 ? nullptr : &prompt_scores[i][t - 1]);
      }
      // Every generated token, through the one that ended generation (EOS or
      // the token completing a stop string), as OpenAI servers report them.
      for (size_t t = 0; t < g.tokens.size(); ++t) lp.add(tok, g.tokens[t], &g.scores[t]);
      c["logprobs"] = lp.to_json();
    } else {
      c["logprobs"] = nullptr;
    }
    choices.push_back(std::move(c));
  }
  static int64_t counter = 0;
  const auto created = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  json reply{{"id", "cmpl-" + std::to_string(++counter)},
             {"object", "text_completion"},
             {"created", created},
             {"model", model_name},
             {"choices", choices},
             {"usage",
              {{"prompt_tokens", prompt_tokens},
               {"completion_tokens", completion_tokens},
               {"total_tokens", prompt_tokens + completion_tokens}}}};
  return {200, dump(reply)};
}

}  // namespace

ApiReply handle_openai_request(NativeBackend& backend, const std::string& model_name,
                               const std::string& method, const std::string& target,
                               const std::string& body) {
  std::string path = target.substr(0, target.find('?'));
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path == "/v1/models" || path == "/health") {
    if (method != "GET") return error_reply(405, method + " " + path + ": use GET");
    if (path == "/health") return {200, "{\"ok\":true}"};
    json m{{"id", model_name},
           {"object", "model"},
           {"created", 0},
           {"owned_by", "assay"},
           {"max_model_len", backend.model().config().n_positions},
           {"checkpoint_hash", backend.checkpoint_hash()}};
    return {200, json{{"object", "list"}, {"data", json::array({m})}}.dump()};
  }
  if (path == "/v1/completions") {
    if (method != "POST") return error_reply(405, method + " " + path + ": use POST");
    return completions(backend, model_name, body);
  }
  if (path == "/v1/chat/completions")
    return error_reply(404, "chat completions are not served; use POST /v1/completions");
  return error_reply(404, "unknown path " + path + " (served: GET /v1/models, POST /v1/completions)");
}

}  // namespace assay::evals
