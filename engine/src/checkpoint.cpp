// Checkpoint directories in the Hugging Face GPT-2 layout.
//
//   model.safetensors  F32 tensors named as GPT2LMHeadModel's state dict
//                      ("transformer.wte.weight", ...), Conv1D [in, out],
//                      lm_head.weight omitted (tied to wte)
//   config.json        GPT-2 config fields + "assay": {format_version, step,
//                      parent, extra}
//   tokenizer files    vocab.json, merges.txt, tokenizer_config.json, ...
//   optimizer.bin      optional AdamW state (see optim.cpp)
//
// Hash (artifact id): sha256 over the bytes of model.safetensors followed by
// the bytes of config.json. The tokenizer files and optimizer.bin are not
// hashed: they do not change what the model computes on token ids.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "assay/engine.h"
#include "assay/hash.h"

namespace fs = std::filesystem;

namespace assay::engine {
namespace {

nlohmann::json config_json(const GPTConfig& c, const Tokenizer& tok, const CheckpointMeta& meta) {
  nlohmann::json extra = nlohmann::json::object();
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

Status int_field(const std::string& what, const nlohmann::json& j, const char* key, int* out,
                 const char* fallback = nullptr) {
  const char* k = key;
  if (!j.contains(k) && fallback && j.contains(fallback)) k = fallback;
  if (!j.contains(k) || !j[k].is_number_integer()) {
    return Status::Invalid(what + ": field " + key + " must be an integer");
  }
  *out = j[k].get<int>();
  return Status::Ok();
}

// Reads config.json into cfg and meta, rejecting GPT-2 variants the engine
// does not compute (other activations, epsilon, untied head, n_inner != 4C).
Status parse_config(const std::string& path, GPTConfig* cfg, CheckpointMeta* meta) {
  std::ifstream f(path);
  if (!f) return Status::IoError(path + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return Status::Corruption(path + ": must be a JSON object");
  if (j.contains("model_type") && j["model_type"] != "gpt2") {
    return Status::Invalid(path + ": model_type must be \"gpt2\", got " + j["model_type"].dump());
  }
  ASSAY_RETURN_IF_ERROR(int_field(path, j, "vocab_size", &cfg->vocab_size));
  ASSAY_RETURN_IF_ERROR(int_field(path, j, "n_positions", &cfg->n_positions, "n_ctx"));
  ASSAY_RETURN_IF_ERROR(int_field(path, j, "n_embd", &cfg->n_embd));
  ASSAY_RETURN_IF_ERROR(int_field(path, j, "n_layer", &cfg->n_layer));
  ASSAY_RETURN_IF_ERROR(int_field(path, j, "n_head", &cfg->n_head));
  ASSAY_RETURN_IF_ERROR(cfg->validate().with_context(path));
  const std::string act = j.value("activation_function", std::string("gelu_new"));
  if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
    return Status::Invalid(path + ": activation_function must be \"gelu_new\" (tanh GELU), got \"" +
                           act + "\"");
  }
  if (j.contains("layer_norm_epsilon")) {
    const double eps = j["layer_norm_epsilon"].get<double>();
    if (std::fabs(eps - 1e-5) > 1e-12) {
      return Status::Invalid(path + ": layer_norm_epsilon must be 1e-05, got " +
                             j["layer_norm_epsilon"].dump());
    }
  }
  if (j.contains("tie_word_embeddings") && j["tie_word_embeddings"] == false) {
    return Status::Invalid(path + ": tie_word_embeddings must be true (the head is tied to wte)");
  }
  if (j.contains("n_inner") && !j["n_inner"].is_null() && j["n_inner"] != 4 * cfg->n_embd) {
    return Status::Invalid(path + ": n_inner must be null or 4*n_embd (" +
                           std::to_string(4 * cfg->n_embd) + "), got " + j["n_inner"].dump());
  }
  *meta = CheckpointMeta{};
  if (j.contains("assay") && j["assay"].is_object()) {
    const auto& a = j["assay"];
    meta->step = a.value("step", int64_t{0});
    meta->parent = a.value("parent", std::string());
    if (a.contains("extra") && a["extra"].is_object()) {
      for (auto it = a["extra"].begin(); it != a["extra"].end(); ++it) {
        meta->extra[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
      }
    }
  }
  return Status::Ok();
}

bool ends_with(const std::string& s, std::string_view suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Maps file tensor names to the engine's "transformer."-prefixed names.
// Returns the file name for each engine name; skips ignorable buffers.
Status map_tensor_names(const std::string& what, const SafeTensors& st,
                        std::map<std::string, std::string>* by_engine_name) {
  for (const SafeTensorInfo& t : st.tensors()) {
    // Ignored by rule: causal-mask buffers of older transformers versions and
    // the tied output head.
    if (ends_with(t.name, ".attn.bias") || ends_with(t.name, ".attn.masked_bias") ||
        t.name == "lm_head.weight") {
      continue;
    }
    const std::string canon =
        t.name.rfind("transformer.", 0) == 0 ? t.name : "transformer." + t.name;
    if (!by_engine_name->emplace(canon, t.name).second) {
      return Status::Corruption(what + ": tensors '" + (*by_engine_name)[canon] + "' and '" +
                                t.name + "' both name " + canon);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> checkpoint_hash(const std::string& dir) {
  // The same rule as assay::artifact_hash for a model checkpoint directory.
  return sha256_files({(fs::path(dir) / kModelFile).string(), (fs::path(dir) / kConfigFile).string()});
}

Result<std::string> save_checkpoint(const std::string& dir, const GPT& model,
                                    const Tokenizer& tokenizer, const CheckpointMeta& meta,
                                    const AdamW* opt) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create directory: " + ec.message());
  if (tokenizer.vocab_size() > model.config().vocab_size) {
    return Status::Invalid(
        "save_checkpoint: tokenizer has " + std::to_string(tokenizer.vocab_size()) +
        " tokens, model vocab_size is " + std::to_string(model.config().vocab_size));
  }
  std::vector<TensorRef> refs;
  const float* p = model.params().data();
  for (const ParamTensor& t : model.param_info()) refs.push_back({t.name, t.shape, p + t.offset});
  const fs::path d(dir);
  ASSAY_RETURN_IF_ERROR(write_safetensors((d / kModelFile).string(), refs));
  {
    std::ofstream f(d / kConfigFile, std::ios::binary | std::ios::trunc);
    f << config_json(model.config(), tokenizer, meta).dump(2) << "\n";
    if (!f) return Status::IoError((d / kConfigFile).string() + ": write failed");
  }
  ASSAY_RETURN_IF_ERROR(tokenizer.save(dir));
  if (opt) ASSAY_RETURN_IF_ERROR(opt->save((d / kOptimizerFile).string()));
  return checkpoint_hash(dir);
}

Result<Checkpoint> load_checkpoint(const std::string& dir, Mode mode) {
  const fs::path d(dir);
  GPTConfig cfg;
  CheckpointMeta meta;
  ASSAY_RETURN_IF_ERROR(parse_config((d / kConfigFile).string(), &cfg, &meta));
  const std::string model_path = (d / kModelFile).string();
  ASSAY_ASSIGN_OR_RETURN(SafeTensors st, SafeTensors::read(model_path));
  std::map<std::string, std::string> names;
  ASSAY_RETURN_IF_ERROR(map_tensor_names(model_path, st, &names));

  // Build the parameter buffer tensor by tensor in the engine's layout.
  std::vector<float> params(cfg.num_params());
  std::set<std::string> used;
  for (const ParamTensor& t : param_layout(cfg)) {
    auto it = names.find(t.name);
    if (it == names.end()) return Status::Corruption(model_path + ": missing tensor " + t.name);
    const SafeTensorInfo* info = st.find(it->second);
    if (info->shape != t.shape) {
      auto fmt = [](const std::vector<int64_t>& s) {
        std::string r = "[";
        for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
        return r + "]";
      };
      return Status::Corruption(model_path + ": tensor " + it->second + " has shape " +
                                fmt(info->shape) + ", expected " + fmt(t.shape));
    }
    ASSAY_RETURN_IF_ERROR(st.copy_f32(it->second, params.data() + t.offset, t.numel));
    used.insert(t.name);
  }
  for (const auto& [canon, file_name] : names) {
    if (!used.count(canon)) {
      return Status::Corruption(model_path + ": unexpected tensor " + file_name +
                                " (not part of a GPT-2 model with this config)");
    }
  }
  ASSAY_ASSIGN_OR_RETURN(GPT model, GPT::from_params(cfg, params, mode));
  ASSAY_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, load_tokenizer(dir));
  if (tok->vocab_size() > cfg.vocab_size) {
    return Status::Invalid(dir + ": tokenizer has " + std::to_string(tok->vocab_size()) +
                           " tokens, more than the model's vocab_size " +
                           std::to_string(cfg.vocab_size));
  }
  ASSAY_ASSIGN_OR_RETURN(std::string hash, checkpoint_hash(dir));
  return Checkpoint{std::move(model), std::move(tok), std::move(meta), std::move(hash)};
}

}  // namespace assay::engine
