// assay data gsm8k|prefs|unlearn|ood: write the synthetic demo data sets, and
// on-policy preference pairs sampled from a checkpoint (prefs --from-model).
#include <filesystem>
#include <iostream>
#include <memory>

#include "assay/datagen.h"
#include "assay/evals_onpolicy.h"
#include "registry.h"

namespace {

using assay::cli::set_exit_code;

int fail(const std::string& cmd, const assay::Status& st) {
  std::cerr << "assay data " << cmd << ": " << st.message() << "\n";
  return 1;
}

template <class T>
std::vector<std::string> lines_of(const std::vector<T>& items) {
  std::vector<std::string> out;
  out.reserve(items.size());
  for (const auto& x : items) out.push_back(assay::data::to_jsonl(x));
  return out;
}

// Writes and reports "wrote N lines to PATH" on stderr; returns the exit code.
int write(const std::string& cmd, const std::string& path, const std::vector<std::string>& lines) {
  if (auto st = assay::data::write_lines(path, lines); !st.ok()) return fail(cmd, st);
  std::cerr << "assay data " << cmd << ": wrote " << lines.size() << " lines to " << path << "\n";
  return 0;
}

void add_gsm(CLI::App* data) {
  auto o = std::make_shared<assay::data::GsmOptions>();
  auto out = std::make_shared<std::string>();
  auto* c = data->add_subcommand("gsm8k", "GSM8K-format arithmetic word problems (question/answer JSONL)");
  c->add_option("--n", o->n, "Number of problems")->capture_default_str();
  c->add_option("--difficulty", o->difficulty,
                "1..8: reasoning steps per problem; operand sizes grow with it")
      ->capture_default_str();
  c->add_option("--seed", o->seed, "Random seed (same seed, same bytes)")->capture_default_str();
  c->add_option("--out", *out, "Output JSONL file")->required();
  c->footer(
      "\nEach line: {\"id\", \"question\", \"answer\"}; the answer explains every step with a\n"
      "calculator annotation <<a+b=c>> and ends with \"#### N\".\n\n"
      "Example:\n  assay data gsm8k --n 500 --difficulty 2 --seed 1 --out train.jsonl");
  c->callback([o, out] {
    if (auto st = assay::data::validate(*o); !st.ok()) return set_exit_code(fail("gsm8k", st));
    set_exit_code(write("gsm8k", *out, lines_of(assay::data::generate_gsm8k(*o))));
  });
}

// --from-model: on-policy pairs sampled from a checkpoint and ranked by the
// verifier (evals_onpolicy.h); otherwise synthetic pairs.
struct OnPolicyFlags {
  std::string from_model, prompts, gen_kwargs, device = "cpu";
  assay::evals::OnPolicyOptions opts;
  int64_t limit = 0;
};

int run_onpolicy(const OnPolicyFlags& f, const assay::data::GsmOptions& g, const std::string& out) {
  namespace ev = assay::evals;
  ev::OnPolicyOptions opts = f.opts;
  opts.seed = g.seed;
  if (!f.gen_kwargs.empty())
    if (auto st = ev::apply_gen_kwargs(f.gen_kwargs, &opts); !st.ok()) return fail("prefs", st);
  if (auto st = ev::validate(opts); !st.ok()) return fail("prefs", st);
  std::vector<ev::VerifiedPrompt> prompts;
  if (!f.prompts.empty()) {
    auto p = ev::load_verified_prompts(f.prompts);
    if (!p.ok()) return fail("prefs", p.status());
    prompts = std::move(*p);
  } else {
    if (auto st = assay::data::validate(g); !st.ok()) return fail("prefs", st);
    prompts = ev::verified_prompts(assay::data::generate_gsm8k(g));
  }
  if (f.limit > 0 && static_cast<int64_t>(prompts.size()) > f.limit) prompts.resize(static_cast<size_t>(f.limit));
  auto r = ev::onpolicy_prefs_from_checkpoint(f.from_model, prompts, opts, f.device);
  if (!r.ok()) return fail("prefs", r.status());
  std::cerr << "assay data prefs: " << ev::summary(*r) << "\n";
  std::vector<std::string> lines;
  for (const auto& p : r->pairs) lines.push_back(assay::data::to_jsonl(assay::data::PrefExample{p.id, p.prompt, p.chosen, p.rejected}));
  return write("prefs", out, lines);
}

void add_prefs(CLI::App* data) {
  auto o = std::make_shared<assay::data::GsmOptions>();
  auto out = std::make_shared<std::string>();
  auto f = std::make_shared<OnPolicyFlags>();
  auto* c = data->add_subcommand("prefs", "Preference pairs (prompt/chosen/rejected JSONL) from word problems");
  c->add_option("--n", o->n, "Number of pairs (with --from-model: of generated problems to prompt with)")->capture_default_str();
  c->add_option("--difficulty", o->difficulty, "1..8, as for gsm8k")->capture_default_str();
  c->add_option("--seed", o->seed, "Random seed (with --from-model: also the base of each sample's seed)")->capture_default_str();
  c->add_option("--out", *out, "Output JSONL file")->required();
  auto* from = c->add_option("--from-model", f->from_model,
                             "On-policy pairs: sample answers from this native checkpoint and rank them with --verifier");
  const std::vector<CLI::Option*> onpolicy = {
      c->add_option("--verifier", f->opts.verifier, "--from-model: how samples are ranked (gsm8k: exact match of the final answer)")->capture_default_str(),
      c->add_option("--samples-per-prompt", f->opts.samples_per_prompt, "--from-model: samples drawn per prompt")->capture_default_str(),
      c->add_option("--pairs-per-prompt", f->opts.pairs_per_prompt, "--from-model: most pairs per prompt (distinct correct vs distinct incorrect samples)")->capture_default_str(),
      c->add_option("--prompts", f->prompts, "--from-model: JSONL question/answer (GSM8K layout) or prompt/answer; default: --n generated problems"),
      c->add_option("--gen-kwargs", f->gen_kwargs, "--from-model: sampling in lm-eval's --gen_kwargs syntax, e.g. temperature=0.8,top_p=0.95,max_gen_toks=128 (default: temperature 1)"),
      c->add_option("--filter", f->opts.filter, "--from-model: gsm8k answer filter, strict-match or flexible-extract")->capture_default_str(),
      c->add_option("--limit", f->limit, "--from-model: only the first N prompts (0 = all)")->capture_default_str(),
      c->add_option("--device", f->device, "--from-model: cpu, cuda, cuda:N or auto")->capture_default_str()};
  for (auto* opt : onpolicy) opt->needs(from);
  c->footer(
      "\nEach line: {\"id\", \"prompt\", \"chosen\", \"rejected\"}. The prompt is\n"
      "\"Question: ...\\nAnswer:\"; chosen is the correct worked answer, rejected makes one\n"
      "arithmetic slip and carries it through to a wrong final number.\n\n"
      "With --from-model, the pairs are the checkpoint's own samples: K per prompt, ranked by\n"
      "the gsm8k filter and exact match against the reference answer; a prompt gives pairs only\n"
      "when it has a correct and an incorrect sample. The counts go to stderr.\n\n"
      "Examples:\n  assay data prefs --n 200 --difficulty 2 --seed 2 --out prefs.jsonl\n"
      "  assay data prefs --from-model runs/sft/final --verifier gsm8k --samples-per-prompt 8 \\\n"
      "      --prompts train.jsonl --gen-kwargs temperature=0.8,max_gen_toks=128 --out onpolicy.jsonl");
  c->callback([o, out, f] {
    if (!f->from_model.empty()) return set_exit_code(run_onpolicy(*f, *o, *out));
    if (auto st = assay::data::validate(*o); !st.ok()) return set_exit_code(fail("prefs", st));
    set_exit_code(write("prefs", *out, lines_of(assay::data::generate_prefs(*o))));
  });
}

void add_unlearn(CLI::App* data) {
  auto o = std::make_shared<assay::data::UnlearnOptions>();
  auto dir = std::make_shared<std::string>();
  auto* c = data->add_subcommand("unlearn", "Forget/retain/holdout splits of fictitious author facts");
  c->add_option("--authors", o->n_authors, "Number of fictitious authors")->capture_default_str();
  c->add_option("--facts", o->facts_per_author, "Facts per author (1..6)")->capture_default_str();
  c->add_option("--forget-frac", o->forget_frac, "Fraction of authors to forget")->capture_default_str();
  c->add_option("--holdout-frac", o->holdout_frac, "Fraction of authors never trained on")
      ->capture_default_str();
  c->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  c->add_option("--perturbed", o->n_perturbed, "False answers per fact in the perturbed files (1..5)")
      ->capture_default_str();
  c->add_option("--out-dir", *dir, "Output directory")->required();
  c->footer(
      "\nWrites forget.jsonl, retain.jsonl, holdout.jsonl and train.jsonl (forget + retain,\n"
      "shuffled: fine-tune on it first, then unlearn the forget split). Each line:\n"
      "{\"id\", \"author\", \"question\", \"answer\", \"text\"}.\n"
      "Also perturbed.jsonl for the forget facts (and retain_perturbed.jsonl,\n"
      "holdout_perturbed.jsonl), the truth-ratio input of `assay eval unlearning --perturbed`:\n"
      "{\"id\", \"question\", \"paraphrased_answer\", \"perturbed_answers\": [...]}, where the\n"
      "paraphrase rewords the true answer and each perturbed answer uses the same wording with\n"
      "a false value of the same kind (year, city, genre, title, award, job).\n\n"
      "Example:\n  assay data unlearn --authors 40 --forget-frac 0.1 --seed 3 --out-dir data/unlearn");
  c->callback([o, dir] {
    if (auto st = assay::data::validate(*o); !st.ok()) return set_exit_code(fail("unlearn", st));
    const auto s = assay::data::generate_unlearn(*o);
    const std::filesystem::path d(*dir);
    int rc = 0;
    if (!rc) rc = write("unlearn", (d / "forget.jsonl").string(), lines_of(s.forget));
    if (!rc) rc = write("unlearn", (d / "retain.jsonl").string(), lines_of(s.retain));
    if (!rc) rc = write("unlearn", (d / "holdout.jsonl").string(), lines_of(s.holdout));
    if (!rc)
      rc = write("unlearn", (d / "train.jsonl").string(),
                 lines_of(assay::data::unlearn_train_mix(s, o->seed)));
    const auto p = assay::data::generate_unlearn_perturbed(*o);
    if (!rc) rc = write("unlearn", (d / "perturbed.jsonl").string(), lines_of(p.forget));
    if (!rc) rc = write("unlearn", (d / "retain_perturbed.jsonl").string(), lines_of(p.retain));
    if (!rc) rc = write("unlearn", (d / "holdout_perturbed.jsonl").string(), lines_of(p.holdout));
    set_exit_code(rc);
  });
}

void add_ood(CLI::App* data) {
  auto o = std::make_shared<assay::data::OodOptions>();
  auto out = std::make_shared<std::string>();
  auto* c = data->add_subcommand("ood", "Out-of-distribution text corpus (weather reports or recipes)");
  c->add_option("--n", o->n, "Number of documents")->capture_default_str();
  c->add_option("--kind", o->kind, "weather or recipes")->capture_default_str();
  c->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  c->add_option("--out", *out, "Output JSONL file")->required();
  c->footer(
      "\nEach line: {\"id\", \"text\"}. A different domain from the word problems, for\n"
      "out-of-distribution evals.\n\n"
      "Example:\n  assay data ood --n 200 --kind weather --seed 4 --out ood.jsonl");
  c->callback([o, out] {
    if (auto st = assay::data::validate(*o); !st.ok()) return set_exit_code(fail("ood", st));
    set_exit_code(write("ood", *out, lines_of(assay::data::generate_ood(*o))));
  });
}

void add_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Generate synthetic, deterministic demo data sets (no downloads)");
  data->require_subcommand(1);
  data->footer(
      "\nAll generators are deterministic: the same options and --seed give the same bytes.\n\n"
      "Examples:\n"
      "  assay data gsm8k --n 500 --difficulty 2 --seed 1 --out train.jsonl\n"
      "  assay data prefs --n 200 --seed 2 --out prefs.jsonl\n"
      "  assay data unlearn --out-dir data/unlearn\n"
      "  assay data ood --kind recipes --out ood.jsonl");
  add_gsm(data);
  add_prefs(data);
  add_unlearn(data);
  add_ood(data);
}

}  // namespace

ASSAY_REGISTER_COMMAND(40, add_data);
