// Config access with path-precise errors, and the fields every recipe shares.
#include <cmath>
#include <limits>
#include <sstream>

#include "train_internal.h"

namespace assay::train::detail {

namespace {

std::string fmt(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

std::string got(const Json& v) {
  std::string d = v.dump();
  if (d.size() > 60) d = d.substr(0, 57) + "...";
  return d;
}

std::string range_text(double lo, double hi, bool lo_open) {
  const double inf = std::numeric_limits<double>::infinity();
  if (hi == inf) return std::string(lo_open ? "> " : ">= ") + fmt(lo);
  return std::string("in ") + (lo_open ? "(" : "[") + fmt(lo) + ", " + fmt(hi) + "]";
}

}  // namespace

Cfg::Cfg(const Json* obj, std::string source, std::string path)
    : obj_(obj), source_(std::move(source)), path_(std::move(path)) {}

bool Cfg::has(const std::string& key) const { return obj_->contains(key) && !(*obj_)[key].is_null(); }

Status Cfg::error(const std::string& key, const std::string& expected) const {
  if (!obj_->contains(key)) return Status::Invalid(where(key) + ": " + expected);
  return Status::Invalid(where(key) + ": expected " + expected + ", got " + got((*obj_)[key]));
}

Status Cfg::number(const std::string& key, double& out, double lo, double hi, bool lo_open) {
  used_.insert(key);
  if (!has(key)) return Status::Ok();
  const Json& v = (*obj_)[key];
  const std::string want = "a number " + range_text(lo, hi, lo_open);
  if (!v.is_number()) return error(key, want);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) return error(key, want);
  out = x;
  return Status::Ok();
}

Status Cfg::integer(const std::string& key, int64_t& out, int64_t lo, int64_t hi) {
  used_.insert(key);
  if (!has(key)) return Status::Ok();
  const Json& v = (*obj_)[key];
  const std::string want = "an integer " + (hi == std::numeric_limits<int64_t>::max()
                                                ? ">= " + std::to_string(lo)
                                                : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  if (!v.is_number_integer()) return error(key, want);
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) return error(key, want);
  out = x;
  return Status::Ok();
}

Status Cfg::integer(const std::string& key, int& out, int64_t lo, int64_t hi) {
  int64_t x = out;
  ASSAY_RETURN_IF_ERROR(integer(key, x, lo, hi));
  out = static_cast<int>(x);
  return Status::Ok();
}

Status Cfg::boolean(const std::string& key, bool& out) {
  used_.insert(key);
  if (!has(key)) return Status::Ok();
  if (!(*obj_)[key].is_boolean()) return error(key, "true or false");
  out = (*obj_)[key].get<bool>();
  return Status::Ok();
}

Status Cfg::string(const std::string& key, std::string& out, const std::vector<std::string>& allowed) {
  used_.insert(key);
  if (!has(key)) return Status::Ok();
  const Json& v = (*obj_)[key];
  std::string want = "a string";
  if (!allowed.empty()) {
    want = "one of";
    for (std::size_t i = 0; i < allowed.size(); ++i) want += (i ? ", " : " ") + allowed[i];
  }
  if (!v.is_string()) return error(key, want);
  const std::string s = v.get<std::string>();
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end())
    return error(key, want);
  if (allowed.empty() && s.empty()) return error(key, "a non-empty string");
  out = s;
  return Status::Ok();
}

Status Cfg::strings(const std::string& key, std::vector<std::string>& out) {
  used_.insert(key);
  if (!has(key)) return Status::Ok();
  const Json& v = (*obj_)[key];
  const char* want = "a string or a non-empty array of strings";
  std::vector<std::string> r;
  if (v.is_string()) {
    r.push_back(v.get<std::string>());
  } else if (v.is_array() && !v.empty()) {
    for (const auto& e : v) {
      if (!e.is_string()) return error(key, want);
      r.push_back(e.get<std::string>());
    }
  } else {
    return error(key, want);
  }
  for (const auto& x : r)
    if (x.empty()) return error(key, want);
  out = std::move(r);
  return Status::Ok();
}

Status Cfg::required(const std::string& key) {
  if (!has(key)) return Status::Invalid(where(key) + ": required field is missing");
  return Status::Ok();
}

Result<Cfg> Cfg::object(const std::string& key) {
  used_.insert(key);
  if (!has(key)) {
    empties_.push_back(std::make_unique<Json>(Json::object()));
    return Cfg(empties_.back().get(), source_, path_ + "/" + key);
  }
  const Json& v = (*obj_)[key];
  if (!v.is_object()) return error(key, "an object");
  return Cfg(&v, source_, path_ + "/" + key);
}

Status Cfg::finish() const {
  for (auto it = obj_->begin(); it != obj_->end(); ++it) {
    if (used_.count(it.key())) continue;
    std::string known;
    for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
    return Status::Invalid(where(it.key()) + ": unknown field (known here: " + known + ")");
  }
  return Status::Ok();
}

Status read_common(Cfg& r, CommonConfig& c, bool init_required) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  c.source = r.source();
  ASSAY_RETURN_IF_ERROR(r.string("out_dir", c.out_dir));
  int64_t seed = static_cast<int64_t>(c.seed);
  ASSAY_RETURN_IF_ERROR(r.integer("seed", seed, 0, kMax));
  c.seed = static_cast<uint64_t>(seed);
  int64_t data_seed = seed;
  ASSAY_RETURN_IF_ERROR(r.integer("data_seed", data_seed, 0, kMax));
  c.data_seed = static_cast<uint64_t>(data_seed);
  ASSAY_RETURN_IF_ERROR(r.integer("threads", c.threads, 1, 256));
  if (init_required) ASSAY_RETURN_IF_ERROR(r.required("init"));
  ASSAY_RETURN_IF_ERROR(r.string("init", c.init));
  if (r.has("init") && r.has("model"))
    return Status::Invalid(r.where("model") + ": give either init (a checkpoint) or model (random init), not both");
  ASSAY_ASSIGN_OR_RETURN(Cfg m, r.object("model"));
  ASSAY_RETURN_IF_ERROR(m.integer("vocab_size", c.model.vocab_size, 1, 1 << 20));
  ASSAY_RETURN_IF_ERROR(m.integer("n_positions", c.model.n_positions, 1, 1 << 16));
  ASSAY_RETURN_IF_ERROR(m.integer("n_layer", c.model.n_layer, 1, 256));
  ASSAY_RETURN_IF_ERROR(m.integer("n_head", c.model.n_head, 1, 256));
  ASSAY_RETURN_IF_ERROR(m.integer("n_embd", c.model.n_embd, 1, 1 << 16));
  ASSAY_RETURN_IF_ERROR(m.finish());
  if (c.model.n_embd % c.model.n_head != 0)
    return Status::Invalid(m.where("n_head") + ": must divide n_embd (" + std::to_string(c.model.n_embd) +
                           "), got " + std::to_string(c.model.n_head));
  if (r.has("tokenizer") && r.has("init"))
    return Status::Invalid(r.where("tokenizer") + ": the tokenizer comes from the init checkpoint");
  ASSAY_RETURN_IF_ERROR(r.string("tokenizer", c.tokenizer));
  ASSAY_RETURN_IF_ERROR(r.integer("batch_size", c.batch_size, 1, 4096));
  ASSAY_RETURN_IF_ERROR(r.integer("seq_len", c.seq_len, 2, 1 << 16));
  ASSAY_RETURN_IF_ERROR(r.integer("steps", c.steps, 1, kMax));
  ASSAY_RETURN_IF_ERROR(r.number("lr", c.lr, 0, std::numeric_limits<double>::infinity(), /*lo_open=*/true));
  ASSAY_RETURN_IF_ERROR(r.number("lr_min", c.lr_min, 0, c.lr));
  ASSAY_RETURN_IF_ERROR(r.integer("warmup", c.warmup, 0, kMax));
  ASSAY_RETURN_IF_ERROR(r.string("schedule", c.schedule, {"cosine", "linear", "constant"}));
  ASSAY_RETURN_IF_ERROR(r.number("weight_decay", c.weight_decay, 0, 10));
  ASSAY_RETURN_IF_ERROR(r.number("grad_clip", c.grad_clip, 0, 1e9));
  ASSAY_RETURN_IF_ERROR(r.integer("log_every", c.log_every, 1, kMax));
  ASSAY_RETURN_IF_ERROR(r.integer("checkpoint_every", c.checkpoint_every, 0, kMax));
  ASSAY_RETURN_IF_ERROR(r.string("device", c.device));
  if (c.device != "auto" && !engine::cuda::parse_device(c.device).ok())
    return r.error("device", "auto, cpu, cuda or cuda:N");
  return Status::Ok();
}

}  // namespace assay::train::detail
