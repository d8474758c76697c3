// LoRA adapters on disk in the Hugging Face PEFT layout (adapter_config.json
// + adapter_model.safetensors) and merging them into a plain checkpoint.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/json_limits.h"
#include "assay/lora.h"

namespace assay::engine::lora {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// PEFT strips the adapter name ("default") when saving: the on-disk key of
// module m's A is "base_model.model." + m + ".lora_A.weight".
constexpr const char* kPeftPrefix = "base_model.model.";

std::string key_a(const std::string& module) { return kPeftPrefix + module + ".lora_A.weight"; }
std::string key_b(const std::string& module) { return kPeftPrefix + module + ".lora_B.weight"; }

Result<std::string> read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return Status::IoError(p.string() + ": cannot open");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

Status save_adapter(const std::string& dir, const LoraAdapters& adapters,
                    const std::string& base_model_name_or_path) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create adapter directory: " + ec.message());
  const LoraConfig& c = adapters.config();
  // Key set of PEFT's LoraConfig that matters to a reader; the alpha is
  // written as an integer when it is one, as PEFT configs usually hold it.
  Json alpha = c.alpha == std::floor(c.alpha) && std::fabs(c.alpha) < 1e15 ? Json((int64_t)c.alpha)
                                                                            : Json(c.alpha);
  Json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model_name_or_path},
      {"r", c.r},
      {"lora_alpha", alpha},
      {"lora_dropout", 0.0},
      {"target_modules", c.targets},
      {"fan_in_fan_out", true},
      {"bias", "none"},
      {"modules_to_save", nullptr},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"use_rslora", false},
      {"use_dora", false},
      {"layers_to_transform", nullptr},
      {"rank_pattern", Json::object()},
      {"alpha_pattern", Json::object()},
      {"revision", nullptr},
  };
  {
    const fs::path p = fs::path(dir) / kAdapterConfigFile;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << cfg.dump(2) << "\n";
    if (!f) return Status::IoError(p.string() + ": write failed");
  }
  std::vector<TensorRef> refs;
  const auto p = adapters.params();
  for (const AdapterTarget& t : adapters.targets()) {
    refs.push_back({key_a(t.module), {c.r, t.in}, p.data() + t.a_offset});
    refs.push_back({key_b(t.module), {t.out, c.r}, p.data() + t.b_offset});
  }
  return write_safetensors((fs::path(dir) / kAdapterModelFile).string(), refs);
}

Result<AdapterFile> read_adapter(const std::string& dir) {
  const fs::path cp = fs::path(dir) / kAdapterConfigFile;
  const std::string where = cp.string();
  ASSAY_ASSIGN_OR_RETURN(std::string text, read_text(cp));
  ASSAY_ASSIGN_OR_RETURN(Json j, parse_json(text, where));
  if (!j.is_object()) return Status::Corruption(where + ": must be a JSON object");
  auto field = [&](const char* k) -> const Json* {
    auto it = j.find(k);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto bad = [&](const char* k, const std::string& want) {
    const Json* v = field(k);
    return Status::Invalid(where + ": " + k + ": expected " + want + ", got " + (v ? v->dump() : "nothing"));
  };
  AdapterFile a;
  const Json* v = field("peft_type");
  if (!v || !v->is_string() || v->get<std::string>() != "LORA") return bad("peft_type", "\"LORA\"");
  v = field("r");
  if (!v || !v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > 4096)
    return bad("r", "an integer 1..4096");
  a.config.r = v->get<int>();
  v = field("lora_alpha");
  if (!v || !v->is_number() || !(v->get<double>() > 0)) return bad("lora_alpha", "a number > 0");
  a.config.alpha = v->get<double>();
  v = field("target_modules");
  a.config.targets.clear();
  if (v && v->is_string()) {
    a.config.targets.push_back(v->get<std::string>());
  } else if (v && v->is_array() && !v->empty()) {
    for (const Json& x : *v) {
      if (!x.is_string()) return bad("target_modules", "a list of module names");
      a.config.targets.push_back(x.get<std::string>());
    }
  } else {
    return bad("target_modules", "a module name or a non-empty list of them");
  }
  // Settings that change the forward pass beyond W + (alpha/r)·Aᵀ·Bᵀ.
  if ((v = field("use_dora")) && !(v->is_boolean() && !v->get<bool>())) return bad("use_dora", "false");
  if ((v = field("use_rslora")) && !(v->is_boolean() && !v->get<bool>())) return bad("use_rslora", "false");
  if ((v = field("bias")) && !(v->is_string() && v->get<std::string>() == "none")) return bad("bias", "\"none\"");
  for (const char* k : {"rank_pattern", "alpha_pattern"}) {
    if ((v = field(k)) && !(v->is_object() && v->empty())) return bad(k, "{} (per-module ranks are not supported)");
  }
  if ((v = field("modules_to_save")) && !(v->is_array() && v->empty())) return bad("modules_to_save", "null");
  if ((v = field("base_model_name_or_path")) && v->is_string()) a.base_model_name_or_path = v->get<std::string>();
  ASSAY_ASSIGN_OR_RETURN(a.tensors, SafeTensors::read((fs::path(dir) / kAdapterModelFile).string()));
  for (const SafeTensorInfo& t : a.tensors.tensors()) {
    const std::string& n = t.name;
    const std::string pre = kPeftPrefix;
    const std::string sa = ".lora_A.weight", sb = ".lora_B.weight";
    auto ends = [&](const std::string& s) {
      return n.size() > pre.size() + s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
    };
    if (n.rfind(pre, 0) != 0 || !(ends(sa) || ends(sb)))
      return Status::Invalid(dir + "/" + kAdapterModelFile + ": tensor '" + n +
                             "': expected base_model.model.<module>.lora_A.weight or .lora_B.weight");
    if (ends(sa)) a.modules.push_back(n.substr(pre.size(), n.size() - pre.size() - sa.size()));
  }
  return a;
}

Result<LoraAdapters> load_adapter(const GPT& model, const AdapterFile& file) {
  ASSAY_ASSIGN_OR_RETURN(LoraAdapters a, LoraAdapters::create(model, file.config, 0));
  const std::string what = std::string("adapter ") + kAdapterModelFile;
  std::vector<float> values(a.params().size(), 0.0f);
  size_t found = 0;
  const int r = file.config.r;
  for (const AdapterTarget& t : a.targets()) {
    const std::pair<std::string, std::vector<int64_t>> want[2] = {{key_a(t.module), {r, t.in}},
                                                                    {key_b(t.module), {t.out, r}}};
    for (int k = 0; k < 2; k++) {
      const SafeTensorInfo* info = file.tensors.find(want[k].first);
      if (!info) return Status::Invalid(what + ": missing tensor " + want[k].first);
      if (info->shape != want[k].second)
        return Status::Invalid(what + ": " + want[k].first + ": expected shape [" +
                               std::to_string(want[k].second[0]) + ", " + std::to_string(want[k].second[1]) +
                               "] for this model and r, got a tensor of " + std::to_string(info->numel()) +
                               " elements with " + std::to_string(info->shape.size()) + " dimensions" +
                               (info->shape.size() == 2 ? " [" + std::to_string(info->shape[0]) + ", " +
                                                              std::to_string(info->shape[1]) + "]"
                                                        : std::string()));
      const size_t off = k == 0 ? t.a_offset : t.b_offset;
      ASSAY_RETURN_IF_ERROR(file.tensors.copy_f32(want[k].first, values.data() + off, info->numel()));
      found++;
    }
  }
  if (found != file.tensors.tensors().size())
    return Status::Invalid(what + ": holds " + std::to_string(file.tensors.tensors().size()) +
                           " tensors, but target_modules select " + std::to_string(found) +
                           " on this model (a tensor for a module the config does not target)");
  return LoraAdapters::from_values(model, file.config, values);
}

Result<std::string> merge_to_checkpoint(const std::string& base_dir, const std::string& adapter_dir,
                                        const std::string& out_dir) {
  auto ck = load_checkpoint(base_dir, Mode::kFrozen);
  if (!ck.ok()) return ck.status().with_context("base checkpoint " + base_dir);
  auto file = read_adapter(adapter_dir);
  if (!file.ok()) return file.status().with_context("adapter " + adapter_dir);
  auto ad = load_adapter(ck->model, *file);
  if (!ad.ok()) return ad.status().with_context("adapter " + adapter_dir + " on base " + base_dir);
  ASSAY_RETURN_IF_ERROR(ad->apply(ck->model));
  CheckpointMeta meta = ck->meta;
  meta.parent = ck->hash;
  meta.extra["merged_adapter"] = fs::absolute(adapter_dir).lexically_normal().string();
  meta.extra["lora_r"] = std::to_string(file->config.r);
  {
    std::ostringstream s;
    s << file->config.alpha;
    meta.extra["lora_alpha"] = s.str();
  }
  auto h = save_checkpoint(out_dir, ck->model, *ck->tokenizer, meta);
  if (!h.ok()) return h.status().with_context("merged checkpoint " + out_dir);
  return *h;
}

}  // namespace assay::engine::lora
