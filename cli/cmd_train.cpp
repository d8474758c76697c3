// assay train RECIPE --config FILE.json [--device D]: run a training recipe on the native engine.
#include <csignal>
#include <iostream>
#include <memory>

#include "assay/train.h"
#include "registry.h"

namespace {

using assay::cli::set_exit_code;

void add_train(CLI::App& app) {
  auto* t = app.add_subcommand("train", "Train a model: pretrain, sft, distill, align or unlearn");
  auto recipe = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto out_dir = std::make_shared<std::string>();
  auto sets = std::make_shared<std::vector<std::string>>();
  auto device = std::make_shared<std::string>();
  t->add_option("recipe", *recipe, "pretrain | sft | distill | align | unlearn")
      ->required()
      ->check(CLI::IsMember(assay::train::recipe_names()));
  t->add_option("--config", *config, "Recipe config (JSON file)")->required();
  t->add_option("--out-dir", *out_dir, "Output directory (overrides config out_dir and ASSAY_OUTPUT_DIR)");
  t->add_option("--set", *sets,
                "Override a config field before validation: dotted.key=value (value parsed as JSON,\n"
                "else a string); repeatable, e.g. --set objective.type=rkl --set lr=3e-4")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  t->add_option("--device", *device,
                "auto (default: cuda:0 when a GPU is visible, else cpu) | cpu | cuda | cuda:N.\n"
                "Same as --set device=.... On CUDA, pretrain/sft and distill fkl/rkl losses run on the\n"
                "GPU; other objectives are computed on the host from copied logits");
  std::string help;
  for (const auto& r : assay::train::recipe_names()) {
    const std::string h = assay::train::recipe_config_help(r);
    // The common part is the same for every recipe: print it once.
    help += help.empty() ? h : h.substr(h.find("\n\n") + 1);
  }
  t->footer(
      "\nOutputs in the output directory: ckpt-<step>/ and final/ checkpoints (Hugging Face GPT-2\n"
      "layout; each names its parent), transcript.jsonl (the order examples were seen).\n"
      "With ASSAY_METRICS_FD set, metric and checkpoint lines go to that descriptor as JSON.\n\n" +
      help +
      "\nExamples:\n"
      "  assay data gsm8k --n 200 --seed 1 --out data/gsm.jsonl\n"
      "  assay train pretrain --config examples/train/teacher.json\n"
      "  assay train distill --config examples/train/distill.json --set objective.type=rkl\n"
      "  assay train pretrain --config examples/train/teacher.json --device cuda:0\n");
  t->callback([recipe, config, out_dir, sets, device] {
    auto env = assay::train::env_from_process(&std::cout);
    if (!env.ok()) {
      std::cerr << "assay train: " << env.status().message() << "\n";
      return set_exit_code(1);
    }
    if (!out_dir->empty()) env->output_dir = *out_dir;
    // A metrics reader that goes away must not kill training: writes then fail
    // with EPIPE and the run carries on with console logging only.
    if (env->metrics_fd >= 0) std::signal(SIGPIPE, SIG_IGN);
    std::vector<std::string> overrides = *sets;
    if (!device->empty()) overrides.push_back("device=" + *device);
    auto r = assay::train::run_recipe(*recipe, *config, *env, overrides);
    if (!r.ok()) {
      std::cerr << "assay train: " << r.status().message() << "\n";
      return set_exit_code(1);
    }
    std::cout << "[" << *recipe << "] done: " << r->steps << " steps, loss " << r->first_loss << " -> "
              << r->last_loss << ", final checkpoint " << r->checkpoints.back() << "\n";
    set_exit_code(0);
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(45, add_train);
