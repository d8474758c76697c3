// Recipe dispatch, environment, and the config field reference for --help.
#include "assay/json_limits.h"
#include "assay/train.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "train_internal.h"

namespace assay::train {

const std::vector<std::string>& recipe_names() {
  static const std::vector<std::string> k = {"pretrain", "sft", "distill", "align", "unlearn"};
  return k;
}

Result<RunEnv> env_from_process(std::ostream* console) {
  RunEnv env;
  env.console = console;
  if (const char* d = std::getenv("ASSAY_OUTPUT_DIR"); d && *d) env.output_dir = d;
  if (const char* fd = std::getenv("ASSAY_METRICS_FD"); fd && *fd) {
    char* end = nullptr;
    const long v = std::strtol(fd, &end, 10);
    if (*end != '\0' || v < 0 || v > 1 << 20)
      return Status::Invalid(std::string("ASSAY_METRICS_FD: expected a file descriptor number, got '") + fd + "'");
    env.metrics_fd = static_cast<int>(v);
  }
  return env;
}

namespace {

// Applies "a.b.c=value" to doc, creating objects on the way.
Status apply_override(detail::Json& doc, const std::string& o) {
  using detail::Json;
  const auto eq = o.find('=');
  if (eq == std::string::npos || eq == 0)
    return Status::Invalid("--set '" + o + "': expected KEY=VALUE, e.g. objective.type=rkl");
  const std::string key = o.substr(0, eq), raw = o.substr(eq + 1);
  auto parsed = parse_json(raw, "--set " + key);
  Json value = parsed.ok() ? std::move(*parsed) : Json(raw);  // a bare word is a string
  Json* at = &doc;
  std::size_t start = 0;
  for (;;) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) return Status::Invalid("--set '" + o + "': empty key segment");
    if (!at->is_object())
      return Status::Invalid("--set '" + o + "': '" + key.substr(0, start ? start - 1 : 0) + "' is not an object");
    if (dot == std::string::npos) {
      (*at)[part] = std::move(value);
      return Status::Ok();
    }
    if (!at->contains(part)) (*at)[part] = Json::object();
    at = &(*at)[part];
    start = dot + 1;
  }
}

}  // namespace

Result<RunSummary> run_recipe_text(const std::string& recipe, const std::string& original,
                                   const std::string& source, const RunEnv& env,
                                   const std::vector<std::string>& overrides) {
  using detail::Json;
  auto parsed = parse_json(original, source);
  if (!parsed.ok()) return Status::Invalid(parsed.status().message());
  Json doc = std::move(*parsed);
  if (!doc.is_object()) return Status::Invalid(source + ": expected a JSON object at the top level");
  for (const auto& o : overrides) ASSAY_RETURN_IF_ERROR(apply_override(doc, o));
  // The effective config: hashed into checkpoints and saved with the run.
  const std::string text = doc.dump(2) + "\n";
  detail::Cfg root(&doc, source, "");
  if (recipe == "pretrain" || recipe == "sft") return detail::recipe_lm(recipe, root, text, env);
  if (recipe == "distill") return detail::recipe_distill(root, text, env);
  if (recipe == "align") return detail::recipe_align(root, text, env);
  if (recipe == "unlearn") return detail::recipe_unlearn(root, text, env);
  return Status::Invalid("recipe: expected one of pretrain, sft, distill, align, unlearn, got '" + recipe + "'");
}

Result<RunSummary> run_recipe(const std::string& recipe, const std::string& config_path, const RunEnv& env,
                              const std::vector<std::string>& overrides) {
  std::ifstream f(config_path, std::ios::binary);
  if (!f) return Status::NotFound(config_path + ": cannot open config file");
  std::ostringstream s;
  s << f.rdbuf();
  return run_recipe_text(recipe, s.str(), std::filesystem::path(config_path).filename().string(), env,
                         overrides);
}

std::string recipe_config_help(const std::string& recipe) {
  std::string h =
      "Common config fields (JSON object):\n"
      "  out_dir           output directory (ASSAY_OUTPUT_DIR overrides it)\n"
      "  seed, threads     RNG seed (default 1) and CPU threads (default 1); same pair, same bytes\n"
      "  data_seed         data-order seed (default: seed): shuffling and batch composition;\n"
      "                    seed then sets only the initialisation (random model, adapters), so\n"
      "                    the order can change with the init fixed and vice versa\n"
      "  init              checkpoint directory to start from, or\n"
      "  model             {n_layer, n_head, n_embd, n_positions, vocab_size} for a random init\n"
      "  tokenizer         \"byte\" (default) or a tokenizer directory, with model\n"
      "  batch_size, seq_len, steps\n"
      "  lr, lr_min, warmup, schedule (cosine|linear|constant), weight_decay, grad_clip\n"
      "  log_every, checkpoint_every (0 = final checkpoint only)\n"
      "  device            auto (default; cuda:0 when a GPU is visible) | cpu | cuda | cuda:N;\n"
      "                    CUDA: fp32 with TF32 matmuls; reproducible on the same GPU model and CUDA\n";
  if (recipe == "pretrain" || recipe == "sft")
    h += "\n" + recipe + ": data.train = a .txt file (chunked) or JSONL with text, question/answer or\n"
         "prompt/completion lines" + (recipe == "sft" ? std::string("; the loss skips prompt tokens.\n") : ".\n");
  if (recipe == "distill")
    h += "\ndistill: teacher (checkpoint), data.train, objective {type: fkl|rkl|jsd|tv|skl|srkl|sinkhorn,\n"
         "tau, beta (jsd), alpha (skl/srkl), weight; sinkhorn: tau, eps, n_iters, coupling\n"
         "sequence|batch}, ce_weight (CE on labels added), mask_prompt (default true).\n"
         "Temperature: logits of both models are divided by tau; no tau^2 factor.\n";
  if (recipe == "align")
    h += "\nalign: init (required; the frozen reference), data.train (prompt/chosen/rejected JSONL),\n"
         "objective {loss: sigmoid|ipo|hinge|robust, divergence: reverse_kl|forward_kl|js|alpha,\n"
         "beta (0.1), robust_eps, alpha, max_log_ratio (10)}. batch_size counts pairs.\n"
         "forward_kl and alpha scores grow like e^-Delta (Delta = summed completion log-ratio\n"
         "policy - reference); below Delta = -max_log_ratio (in (0, 80]) they continue linearly\n"
         "with the slope at the bound, and clamped_frac (metrics) is the fraction of completions\n"
         "affected since the previous metric line; the first clamp prints a warning.\n";
  if (recipe == "unlearn")
    h += "\nunlearn: init (required), data {forget, retain, holdout}, method ga|graddiff|kl|npo|simnpo|loku,\n"
         "objective {beta (npo 0.1, simnpo 4.5), delta, forget_weight, retain_weight, holdout_eval}.\n"
         "ga trains on the forget split alone: retain_weight must be unset (it is 0 for ga).\n"
         "retain_loss (retain NLL) is logged whenever data.retain is given; with ga or\n"
         "retain_weight 0 it is scored without gradient at metric lines (not in the transcript).\n"
         "loku: lora {r (8), alpha (2r), targets ([c_attn, c_proj, c_fc]), init fila|default};\n"
         "only the adapters train (inverted hinge loss on forget + NLL on retain); checkpoints\n"
         "hold the merged model plus adapter/ in the PEFT layout (assay train merge).\n";
  return h;
}

}  // namespace assay::train
