// Checkpoint directories in the Hugging Face GPT-2 layout.
//
//   model.safetensors  F32 tensors named as GPT2LMHeadModel's state dict
//                      ("transformer.wte.weight", ...), Conv1D [in, out],
//                      lm_head.weight omitted (tied to wte)
//   config.json        GPT-2 config fields + "assay": {format_version, step,
//                      parent, extra} (read strictly: checkpoint_config.cpp)
//   tokenizer files    vocab.json, merges.txt, tokenizer_config.json, ...
//   optimizer.bin      optional AdamW state (see optim.cpp)
//
// Hash (artifact id): sha256 over the bytes of model.safetensors followed by
// the bytes of config.json. The tokenizer files and optimizer.bin are not
// hashed: they do not change what the model computes on token ids.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "assay/engine.h"
#include "assay/hash.h"
#include "checkpoint_internal.h"

namespace fs = std::filesystem;

namespace assay::engine {
namespace {

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

// True for "<prefix>NNNNN-of-NNNNN<suffix>", the shard names transformers writes.
bool is_shard_name(const std::string& name, const std::string& prefix, const std::string& suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      !ends_with(name, suffix)) {
    return false;
  }
  const std::string mid = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  const size_t of = mid.find("-of-");
  if (of == std::string::npos) return false;
  auto digits = [](std::string_view v) {
    return !v.empty() && std::all_of(v.begin(), v.end(),
                                     [](char c) { return std::isdigit((unsigned char)c) != 0; });
  };
  return digits(std::string_view(mid).substr(0, of)) &&
         digits(std::string_view(mid).substr(of + 4));
}

// The engine reads one model.safetensors. When it is absent, says what the
// directory holds instead (transformers' other layouts) and how to convert.
Status check_weights_file(const fs::path& d) {
  if (fs::exists(d / kModelFile)) return Status::Ok();
  std::vector<std::string> shards, torch_files, other;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(d, ec)) {
    const std::string n = e.path().filename().string();
    if (n == "model.safetensors.index.json" || is_shard_name(n, "model-", ".safetensors")) {
      shards.push_back(n);
    } else if (n == "pytorch_model.bin" || n == "pytorch_model.bin.index.json" ||
               is_shard_name(n, "pytorch_model-", ".bin")) {
      torch_files.push_back(n);
    } else if (n == "tf_model.h5" || n == "flax_model.msgpack") {
      other.push_back(n);
    }
  }
  auto list = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    std::string r;
    for (const auto& x : v) r += (r.empty() ? "" : ", ") + x;
    return r;
  };
  const std::string convert =
      "convert it to a single model.safetensors, e.g. with transformers: "
      "GPT2LMHeadModel.from_pretrained(dir).save_pretrained(out, safe_serialization=True, "
      "max_shard_size=\"1000GB\")";
  const std::string where = d.string() + ": no " + kModelFile + "; ";
  if (!shards.empty()) {
    return Status::NotFound(where + "the weights are sharded safetensors (" + list(shards) +
                            "), and the engine reads one unsharded file: " + convert);
  }
  if (!torch_files.empty()) {
    return Status::NotFound(where + "the weights are a PyTorch pickle (" + list(torch_files) +
                            "), and the engine reads safetensors only: " + convert);
  }
  if (!other.empty()) {
    return Status::NotFound(where + "the weights are in a TensorFlow/Flax format (" + list(other) +
                            "), and the engine reads safetensors only: " + convert);
  }
  if (ec) return Status::IoError(d.string() + ": cannot list directory: " + ec.message());
  return Status::NotFound(where + "the directory holds no model weights");
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Each tensor of the engine's layout is present with its shape, and the file
// holds no other (ignorable buffers aside: map_tensor_names).
Status check_tensors(const std::string& model_path, const SafeTensors& st,
                     const std::map<std::string, std::string>& names,
                     const std::vector<ParamTensor>& layout) {
  std::set<std::string> used;
  for (const ParamTensor& t : layout) {
    auto it = names.find(t.name);
    if (it == names.end()) return Status::Corruption(model_path + ": missing tensor " + t.name);
    const SafeTensorInfo* info = st.find(it->second);
    if (info->shape != t.shape) {
      return Status::Corruption(model_path + ": tensor " + it->second + " has shape " +
                                shape_text(info->shape) + ", expected " + shape_text(t.shape));
    }
    used.insert(t.name);
  }
  for (const auto& [canon, file_name] : names) {
    if (!used.count(canon)) {
      return Status::Corruption(model_path + ": unexpected tensor " + file_name +
                                " (not part of a GPT-2 model with this config)");
    }
  }
  return Status::Ok();
}

// A NaN or infinite weight makes every log-prob NaN, and an eval over NaN
// scores would still "succeed": refuse the checkpoint, naming the tensor.
Status check_finite(const std::string& model_path, const std::string& tensor, const float* v,
                    size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!std::isfinite(v[i])) {
      return Status::Corruption(model_path + ": tensor " + tensor + " holds a non-finite value (" +
                                (std::isnan(v[i]) ? "nan" : v[i] > 0 ? "inf" : "-inf") +
                                ") at element " + std::to_string(i) + " of " + std::to_string(n) +
                                "; the weights are corrupt or training diverged");
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
    f << checkpoint_config_json(model.config(), tokenizer, meta).dump(2) << "\n";
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
  ASSAY_RETURN_IF_ERROR(parse_checkpoint_config((d / kConfigFile).string(), &cfg, &meta));
  const std::string model_path = (d / kModelFile).string();
  ASSAY_RETURN_IF_ERROR(check_weights_file(d));
  ASSAY_ASSIGN_OR_RETURN(SafeTensors st, SafeTensors::read(model_path));
  std::map<std::string, std::string> names;
  ASSAY_RETURN_IF_ERROR(map_tensor_names(model_path, st, &names));

  // Every tensor is checked against the config before the parameter buffer
  // is allocated: config.json alone must not make the load allocate a model
  // the weights file does not hold.
  const std::vector<ParamTensor> layout = param_layout(cfg);
  ASSAY_RETURN_IF_ERROR(check_tensors(model_path, st, names, layout));
  std::vector<float> params(cfg.num_params());
  for (const ParamTensor& t : layout) {
    const std::string& file_name = names.at(t.name);
    float* dst = params.data() + t.offset;
    ASSAY_RETURN_IF_ERROR(st.copy_f32(file_name, dst, t.numel));
    ASSAY_RETURN_IF_ERROR(check_finite(model_path, file_name, dst, t.numel));
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
