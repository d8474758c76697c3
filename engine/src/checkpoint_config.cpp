// config.json of a checkpoint directory: writing Assay's, and reading
// Assay's or one written by transformers' GPT2Config.save_pretrained.
//
// Reading is strict in two ways. A field whose JSON type is wrong is an
// error naming the file, the field, the expected type and the value found.
// A setting that transformers (4.44) honours and that would make
// GPT2LMHeadModel compute different log-probs from the engine's fixed
// architecture is refused rather than ignored, since ignoring it silently
// changes every number computed from the checkpoint. Settings that do not
// change what an eval-mode forward computes (dropout rates, init range,
// use_cache, attention backend, summary_* heads of GPT2DoubleHeadsModel,
// token ids, torch_dtype: weights are converted to fp32) are accepted.
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "assay/json_limits.h"
#include "checkpoint_internal.h"

namespace assay::engine {
namespace {

using Json = nlohmann::json;

// True when `v` nests at most `limit` arrays/objects deep. Iterative: the
// value may come from a file nested 100,000 levels deep.
bool nests_within(const Json& v, int limit) {
  std::vector<std::pair<const Json*, int>> todo{{&v, 1}};
  while (!todo.empty()) {
    auto [x, depth] = todo.back();
    todo.pop_back();
    if (!x->is_structured()) continue;
    if (depth > limit) return false;
    for (const Json& child : *x) todo.emplace_back(&child, depth + 1);
  }
  return true;
}

// The value found, for an error message: its JSON text, cut at 200 bytes.
// A deeply nested value is described instead (dump() recurses per level).
std::string found(const Json& v) {
  constexpr int kMaxDepth = 16;
  constexpr size_t kMaxText = 200;
  if (!nests_within(v, kMaxDepth)) {
    return std::string(v.is_array() ? "an array" : "an object") + " nested deeper than " +
           std::to_string(kMaxDepth) + " levels";
  }
  std::string text = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > kMaxText) text = text.substr(0, kMaxText) + "...";
  return text;
}

Status type_error(const std::string& path, const std::string& key, const char* expected,
                  const Json& got) {
  return Status::Invalid(path + ": field " + key + " must be " + expected + ", got " + found(got));
}

Status unsupported(const std::string& path, const std::string& key, const Json& got,
                   const std::string& why) {
  return Status::Invalid(path + ": field " + key + " = " + found(got) +
                         " is not supported: " + why);
}

// An integer field in int range; absent leaves *out and *found unchanged.
Status read_int(const std::string& path, const Json& j, const std::string& key, int* out,
                bool* found) {
  if (!j.contains(key)) return Status::Ok();
  const Json& v = j[key];
  if (!v.is_number_integer()) return type_error(path, key, "an integer", v);
  const int64_t x = v.get<int64_t>();
  if (x < INT32_MIN || x > INT32_MAX) return type_error(path, key, "a 32-bit integer", v);
  *out = (int)x;
  *found = true;
  return Status::Ok();
}

// A required size field. transformers maps the PretrainedConfig alias
// (hidden_size, ...) onto the GPT-2 name and the alias wins when both are
// present; two different values are refused instead of picking one.
// `alias` may be null; `legacy` (may be null) is an older name read only
// when the others are absent (n_ctx).
Status read_size(const std::string& path, const Json& j, const char* key, const char* alias,
                 const char* legacy, int* out) {
  bool has_key = false, has_alias = false, has_legacy = false;
  int v_key = 0, v_alias = 0, v_legacy = 0;
  ASSAY_RETURN_IF_ERROR(read_int(path, j, key, &v_key, &has_key));
  if (alias) ASSAY_RETURN_IF_ERROR(read_int(path, j, alias, &v_alias, &has_alias));
  if (has_key && has_alias && v_key != v_alias) {
    return Status::Invalid(path + ": fields " + key + " (" + std::to_string(v_key) + ") and " +
                           alias + " (" + std::to_string(v_alias) + ") disagree");
  }
  if (has_key || has_alias) {
    *out = has_alias ? v_alias : v_key;
    return Status::Ok();
  }
  if (legacy) ASSAY_RETURN_IF_ERROR(read_int(path, j, legacy, &v_legacy, &has_legacy));
  if (!has_legacy) return Status::Invalid(path + ": field " + key + " (an integer) is missing");
  *out = v_legacy;
  return Status::Ok();
}

// A boolean flag the engine supports with one value only.
Status require_flag(const std::string& path, const Json& j, const char* key, bool supported,
                    const char* why) {
  if (!j.contains(key)) return Status::Ok();
  const Json& v = j[key];
  if (!v.is_boolean()) return type_error(path, key, "true or false", v);
  if (v.get<bool>() != supported) return unsupported(path, key, v, why);
  return Status::Ok();
}

Status check_string_field(const std::string& path, const Json& j, const char* key,
                          std::initializer_list<const char*> allowed, const char* why) {
  if (!j.contains(key)) return Status::Ok();
  const Json& v = j[key];
  if (!v.is_string()) return type_error(path, key, "a string", v);
  for (const char* a : allowed) {
    if (v.get<std::string>() == a) return Status::Ok();
  }
  return unsupported(path, key, v, why);
}

Status check_sizes(const std::string& path, const Json& j, GPTConfig* cfg) {
  ASSAY_RETURN_IF_ERROR(read_size(path, j, "vocab_size", nullptr, nullptr, &cfg->vocab_size));
  ASSAY_RETURN_IF_ERROR(
      read_size(path, j, "n_positions", "max_position_embeddings", "n_ctx", &cfg->n_positions));
  ASSAY_RETURN_IF_ERROR(read_size(path, j, "n_embd", "hidden_size", nullptr, &cfg->n_embd));
  ASSAY_RETURN_IF_ERROR(read_size(path, j, "n_layer", "num_hidden_layers", nullptr, &cfg->n_layer));
  ASSAY_RETURN_IF_ERROR(read_size(path, j, "n_head", "num_attention_heads", nullptr, &cfg->n_head));
  ASSAY_RETURN_IF_ERROR(cfg->validate().with_context(path));
  if (j.contains("n_inner") && !j["n_inner"].is_null()) {
    const Json& v = j["n_inner"];
    if (!v.is_number_integer()) return type_error(path, "n_inner", "null or an integer", v);
    if (v.get<int64_t>() != 4 * (int64_t)cfg->n_embd) {
      return unsupported(path, "n_inner", v,
                         "the MLP width is 4*n_embd (" + std::to_string(4 * cfg->n_embd) +
                             "); use null or that value");
    }
  }
  return Status::Ok();
}

// Architecture switches of GPT2Config and PretrainedConfig.
Status check_architecture(const std::string& path, const Json& j) {
  ASSAY_RETURN_IF_ERROR(
      check_string_field(path, j, "model_type", {"gpt2"}, "model_type must be \"gpt2\""));
  // gelu_pytorch_tanh and gelu_fast are the same tanh approximation as gelu_new.
  ASSAY_RETURN_IF_ERROR(check_string_field(path, j, "activation_function",
                                           {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"},
                                           "activation_function must be \"gelu_new\" (tanh GELU)"));
  if (j.contains("layer_norm_epsilon")) {
    const Json& v = j["layer_norm_epsilon"];
    if (!v.is_number()) return type_error(path, "layer_norm_epsilon", "a number", v);
    if (std::fabs(v.get<double>() - 1e-5) > 1e-12) {
      return unsupported(path, "layer_norm_epsilon", v, "layer_norm_epsilon must be 1e-05");
    }
  }
  ASSAY_RETURN_IF_ERROR(require_flag(path, j, "tie_word_embeddings", true,
                                     "tie_word_embeddings must be true (the head is tied to wte)"));
  ASSAY_RETURN_IF_ERROR(require_flag(path, j, "scale_attn_weights", true,
                                     "attention scores are always scaled by 1/sqrt(head_dim)"));
  ASSAY_RETURN_IF_ERROR(require_flag(path, j, "scale_attn_by_inverse_layer_idx", false,
                                     "attention scores are not scaled by 1/(layer_idx+1)"));
  ASSAY_RETURN_IF_ERROR(require_flag(path, j, "add_cross_attention", false,
                                     "the engine has no cross-attention layers"));
  // Only changes the precision of the score computation (upcast to fp32),
  // which the engine always does: either value is accepted.
  if (j.contains("reorder_and_upcast_attn") && !j["reorder_and_upcast_attn"].is_boolean()) {
    return type_error(path, "reorder_and_upcast_attn", "true or false",
                      j["reorder_and_upcast_attn"]);
  }
  if (j.contains("pruned_heads") && !j["pruned_heads"].is_null()) {
    const Json& v = j["pruned_heads"];
    if (!v.is_object()) return type_error(path, "pruned_heads", "an object", v);
    if (!v.empty()) return unsupported(path, "pruned_heads", v, "every layer has all n_head heads");
  }
  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    return unsupported(path, "quantization_config", j["quantization_config"],
                       "the engine reads unquantized F32/F16/BF16 weights only");
  }
  return Status::Ok();
}

Status parse_assay_block(const std::string& path, const Json& j, CheckpointMeta* meta) {
  *meta = CheckpointMeta{};
  if (!j.contains("assay") || j["assay"].is_null()) return Status::Ok();
  const Json& a = j["assay"];
  if (!a.is_object()) return type_error(path, "assay", "an object", a);
  if (a.contains("format_version") && !a["format_version"].is_number_integer()) {
    return type_error(path, "assay.format_version", "an integer", a["format_version"]);
  }
  if (a.contains("step")) {
    if (!a["step"].is_number_integer())
      return type_error(path, "assay.step", "an integer", a["step"]);
    meta->step = a["step"].get<int64_t>();
  }
  if (a.contains("parent")) {
    if (!a["parent"].is_string()) return type_error(path, "assay.parent", "a string", a["parent"]);
    meta->parent = a["parent"].get<std::string>();
  }
  if (a.contains("extra")) {
    if (!a["extra"].is_object()) return type_error(path, "assay.extra", "an object", a["extra"]);
    for (auto it = a["extra"].begin(); it != a["extra"].end(); ++it) {
      if (!nests_within(*it, 16)) {
        return type_error(path, "assay.extra." + it.key(), "a value nested at most 16 levels",
                          *it);
      }
      meta->extra[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
    }
  }
  return Status::Ok();
}

}  // namespace

Json checkpoint_config_json(const GPTConfig& c, const Tokenizer& tok, const CheckpointMeta& meta) {
  Json extra = Json::object();
  for (const auto& [k, v] : meta.extra) extra[k] = v;
  return {
      {"model_type", "gpt2"},
      {"architectures", {"GPT2LMHeadModel"}},
      {"vocab_size", c.vocab_size},
      {"n_positions", c.n_positions},
      {"n_ctx", c.n_positions},
      {"n_embd", c.n_embd},
      {"n_layer", c.n_layer},
      {"n_head", c.n_head},
      {"n_inner", nullptr},
      {"activation_function", "gelu_new"},
      {"layer_norm_epsilon", 1e-5},
      {"tie_word_embeddings", true},
      {"scale_attn_weights", true},
      {"resid_pdrop", 0.0},
      {"embd_pdrop", 0.0},
      {"attn_pdrop", 0.0},
      {"initializer_range", 0.02},
      {"torch_dtype", "float32"},
      {"bos_token_id", tok.bos_id()},
      {"eos_token_id", tok.eos_id()},
      {"assay",
       {{"format_version", 1}, {"step", meta.step}, {"parent", meta.parent}, {"extra", extra}}},
  };
}

Status parse_checkpoint_config(const std::string& path, GPTConfig* cfg, CheckpointMeta* meta) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError(path + ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // The shared reader: depth limit, duplicate keys and out-of-range numbers
  // are errors naming the file, line and column.
  auto parsed = parse_json(text, path);
  if (!parsed.ok()) return Status::Corruption(parsed.status().message());
  const Json& j = *parsed;
  if (!j.is_object()) return Status::Corruption(path + ": must be a JSON object");
  ASSAY_RETURN_IF_ERROR(check_architecture(path, j));
  ASSAY_RETURN_IF_ERROR(check_sizes(path, j, cfg));
  return parse_assay_block(path, j, meta);
}

}  // namespace assay::engine
