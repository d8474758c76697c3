// The files lm-eval users read: the results JSON (results_document), the
// samples JSONL (one line per document per filter, lm-eval's hashes), and
// lm-eval samples files read back as predictions.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "assay/evals_gsm8k.h"
#include "assay/evals_report.h"
#include "assay/specs.h"
#include "pyref.h"
#include "support/temp_dir.h"

namespace assay::evals {
namespace {

using json = nlohmann::json;

std::vector<json> lines_of(const std::string& text) {
  std::vector<json> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    out.push_back(json::parse(text.substr(at, nl - at)));
    at = nl + 1;
  }
  return out;
}

std::string write_tmp(const std::string& name, const std::string& text) {
  static assay::testing::TempDir dir("lmeval-files");  // removed when the program exits
  std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Three documents; the second has quotes, a tab, a control character and
// non-ASCII text, which json.dumps(ensure_ascii=False) keeps as UTF-8.
Gsm8kPredictions three_docs() {
  Gsm8kPredictions p;
  p.doc_ids = {0, 1, 2};
  p.questions = {"How many?", "Say \"hi\"\tto Zoë \x01 ÷ 2?", "Last one"};
  p.prompts = {"Question: How many?\nAnswer:", "Question: Say\nAnswer:", "Question: Last one\nAnswer:"};
  p.responses = {" It is 18.\n#### 18", " She earns $1,018.", " no idea"};
  p.references = {"9 * 2 = <<9*2=18>>18\n#### 18", "#### 1,018", "#### 4"};
  return p;
}

const char* kHashScript = R"PY(
import hashlib
def h(s): return hashlib.sha256(s.encode("utf-8")).hexdigest()
out = []
for q, a, p in zip(args["q"], args["a"], args["p"]):
    doc = {"question": q, "answer": a}
    out.append({"doc": h(json.dumps(doc, indent=2, ensure_ascii=False)), "prompt": h(p), "target": h(str(a))})
task = h("".join(x["doc"] + x["prompt"] + x["target"] for x in out + out))
print(json.dumps({"samples": out, "task": task}))
)PY";

TEST(EvalsLmEvalFiles, SamplesJsonlHasLmEvalLayoutAndHashes) {
  Gsm8kConfig cfg;
  const Gsm8kPredictions p = three_docs();
  auto r = score_gsm8k_predictions(p, cfg).value();
  auto lines = lines_of(gsm8k_samples_jsonl(r));
  // One line per document per filter, filter by filter.
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0]["filter"], "strict-match");
  EXPECT_EQ(lines[3]["filter"], "flexible-extract");
  const json& l = lines[4];  // doc 1, flexible-extract
  EXPECT_EQ(l["doc_id"], 1);
  EXPECT_EQ(l["doc"], (json{{"question", p.questions[1]}, {"answer", "#### 1,018"}}));
  EXPECT_EQ(l["target"], "#### 1,018");
  EXPECT_EQ(l["arguments"]["gen_args_0"]["arg_0"], p.prompts[1]);
  EXPECT_EQ(l["arguments"]["gen_args_0"]["arg_1"]["until"][0], "Question:");
  EXPECT_EQ(l["arguments"]["gen_args_0"]["arg_1"]["do_sample"], false);
  EXPECT_EQ(l["resps"], json::array({json::array({" She earns $1,018."})}));
  EXPECT_EQ(l["filtered_resps"], json::array({"$1,018."}));
  EXPECT_EQ(l["metrics"], json::array({"exact_match"}));
  EXPECT_EQ(l["exact_match"], 1.0);
  EXPECT_EQ(lines[1]["exact_match"], 0.0);  // strict-match finds no "#### "
  json args{{"q", p.questions}, {"a", p.references}, {"p", p.prompts}};
  const std::string script = "args = json.loads(r\"\"\"" + args.dump() + "\"\"\")" + kHashScript;
  ASSAY_PYREF_OR_SKIP(ref, script);
  for (size_t i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    const json& want = ref["samples"][i % 3];
    EXPECT_EQ(lines[i]["doc_hash"], want["doc"]);
    EXPECT_EQ(lines[i]["prompt_hash"], want["prompt"]);
    EXPECT_EQ(lines[i]["target_hash"], want["target"]);
  }
  EXPECT_EQ(gsm8k_task_hash(r), ref["task"].get<std::string>());
  EXPECT_EQ(r.results["task_hashes"]["gsm8k"], ref["task"]);
}

// A samples file as lm-eval writes it: each document twice (once per filter,
// filter by filter). Read as predictions it counts each document once, so n
// and stderr equal those of the one-line-per-document file.
TEST(EvalsLmEvalFiles, LmEvalSamplesFileCountsDocumentsOnce) {
  const Gsm8kPredictions p = three_docs();
  Gsm8kConfig cfg;
  auto direct = score_gsm8k(p.responses, p.references, cfg).value();
  std::string text;
  for (const char* filter : {"strict-match", "flexible-extract"}) {
    for (size_t i = 0; i < 3; ++i) {
      json line{{"doc_id", i},
                {"doc", {{"question", p.questions[i]}, {"answer", p.references[i]}}},
                {"target", p.references[i]},
                {"arguments", {{"gen_args_0", {{"arg_0", p.prompts[i]},
                                               {"arg_1", {{"until", {"Question:"}}, {"do_sample", false}}}}}}},
                {"resps", {{p.responses[i]}}},
                {"filtered_resps", {std::string(filter) == "strict-match"
                                        ? filter_strict_match(p.responses[i])
                                        : filter_flexible_extract(p.responses[i])}},
                {"filter", filter},
                {"metrics", {"exact_match"}},
                {"doc_hash", "0"}, {"prompt_hash", "0"}, {"target_hash", "0"},
                {"exact_match", 0.0}};
      text += line.dump() + "\n";
    }
  }
  PredictionsOptions o;
  o.path = write_tmp("assay_lmeval_samples.jsonl", text);
  auto read = read_gsm8k_predictions(o);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_TRUE(read->lm_eval_samples);
  EXPECT_EQ(read->responses, p.responses);
  EXPECT_EQ(read->references, p.references);
  EXPECT_EQ(read->prompts, p.prompts);
  EXPECT_EQ(read->questions, p.questions);
  auto scored = score_gsm8k_predictions(*read, cfg).value();
  for (const char* f : {"strict-match", "flexible-extract"}) {
    SCOPED_TRACE(f);
    EXPECT_EQ(scored.exact_match[f].n, 3);
    EXPECT_EQ(scored.exact_match[f].mean, direct.exact_match[f].mean);
    EXPECT_EQ(scored.exact_match[f].stderr_, direct.exact_match[f].stderr_);
  }
  EXPECT_EQ(scored.results["n-samples"]["gsm8k"]["effective"], 3);
  // The filter's own line; --limit counts documents.
  o.filter = "flexible-extract";
  o.limit = 2;
  auto two = read_gsm8k_predictions(o).value();
  EXPECT_EQ(two.doc_ids, (std::vector<int64_t>{0, 1}));
  o.filter = "nonsense";
  EXPECT_FALSE(read_gsm8k_predictions(o).ok());
  // Assay's own samples file reads back the same way.
  o = PredictionsOptions{};
  o.path = write_tmp("assay_own_samples.jsonl", gsm8k_samples_jsonl(scored));
  auto own = read_gsm8k_predictions(o).value();
  EXPECT_EQ(own.responses, p.responses);
  EXPECT_EQ(own.references, p.references);
  EXPECT_EQ(own.questions, p.questions);
  // A document twice for one filter is refused.
  o.path = write_tmp("assay_dup_samples.jsonl", text + lines_of(text)[0].dump() + "\n");
  auto dup = read_gsm8k_predictions(o);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("doc_id 0 appears twice"), std::string::npos) << dup.status().message();
}

TEST(EvalsLmEvalFiles, PlainPredictionsFiles) {
  PredictionsOptions o;
  o.path = write_tmp("assay_plain_preds.jsonl",
                     "{\"response\": [[\"#### 5\"]], \"answer\": \"#### 5\"}\n\n"
                     "{\"response\": \"#### 6\", \"answer\": 5}\n");
  auto p = read_gsm8k_predictions(o).value();
  EXPECT_FALSE(p.lm_eval_samples);
  EXPECT_EQ(p.responses, (std::vector<std::string>{"#### 5", "#### 6"}));
  EXPECT_EQ(p.references, (std::vector<std::string>{"#### 5", "5"}));
  o.pred_field = "out";
  auto missing = read_gsm8k_predictions(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(":1: missing prediction field \"out\" (set --pred-field)"),
            std::string::npos) << missing.status().message();
  // References from the test split by doc_id.
  std::vector<Gsm8kDoc> test{{"q0", "#### 0"}, {"q1", "#### 1"}};
  o = PredictionsOptions{};
  o.test = &test;
  o.path = write_tmp("assay_doc_preds.jsonl", "{\"doc_id\": 1, \"response\": \"x\"}\n{\"doc_id\": 7, \"response\": \"y\"}\n");
  auto out = read_gsm8k_predictions(o);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find(":2: doc 7 is outside the GSM8K test split (0..1)"), std::string::npos)
      << out.status().message();
  o.limit = 1;
  auto one = read_gsm8k_predictions(o).value();
  EXPECT_EQ(one.references, std::vector<std::string>{"#### 1"});
  EXPECT_EQ(one.questions, std::vector<std::string>{"q1"});
  o.path = "/nonexistent/preds.jsonl";
  EXPECT_EQ(read_gsm8k_predictions(o).status().code(), Code::kIoError);
}

TEST(EvalsLmEvalFiles, ResultsDocumentHasLmEvalLayout) {
  auto spec = schemas::parse_suite_spec(
      json::parse(R"({"name": "ood", "version": "1.0", "task": "ood", "options": {"variant": "text", "k": 2}})"),
      "ood.json");
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EvalIdentity id{"abc", "ood", "1.0+12345678", 3, 42};
  std::vector<ResultRow> rows{{"ood", "s_qa_auroc", "none", 0.9, std::nullopt, 80, ""},
                              {"ood", "nll", "forget", 1.5, 0.1, 40, ""}};
  ReportContext rc;
  rc.spec = &*spec;
  rc.id = &id;
  rc.rows = &rows;
  rc.backend = "native";
  rc.task_config = {{"options", {{"variant", "qa"}}}};
  rc.run_config = {{"model", "assay-native"}, {"model_args", "pretrained=runs/a:b/final,device=cpu"},
                   {"batch_size", 16}, {"limit", nullptr}};
  rc.n_original = 100;
  rc.start_time = 1700000000.5;
  rc.total_seconds = 2.0;
  rc.task_hash = "feed";
  json doc = results_document(rc);
  for (const char* key : {"results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                          "n-samples", "config", "git_hash", "date", "task_hashes", "model_source",
                          "model_name", "model_name_sanitized", "system_instruction",
                          "system_instruction_sha", "fewshot_as_multiturn", "chat_template",
                          "chat_template_sha", "start_time", "end_time", "total_evaluation_time_seconds",
                          "assay"})
    EXPECT_TRUE(doc.contains(key)) << key;
  // The options actually used, over the spec's others.
  EXPECT_EQ(doc["configs"]["ood"]["options"], (json{{"variant", "qa"}, {"k", 2}}));
  const json& res = doc["results"]["ood"];
  EXPECT_EQ(res["name"], "ood");
  EXPECT_EQ(res["alias"], "ood");
  EXPECT_EQ(res["sample_len"], 80);
  EXPECT_EQ(res["s_qa_auroc,none"], 0.9);
  EXPECT_EQ(res["s_qa_auroc_stderr,none"], "N/A");
  EXPECT_EQ(res["nll_stderr,forget"], 0.1);
  EXPECT_EQ(doc["versions"]["ood"], 1.0);
  EXPECT_EQ(doc["n-samples"]["ood"], (json{{"original", 100}, {"effective", 80}}));
  EXPECT_EQ(doc["higher_is_better"]["ood"], (json{{"s_qa_auroc", true}, {"nll", false}}));
  EXPECT_EQ(doc["group_subtasks"]["ood"], json::array());
  EXPECT_FALSE(doc.contains("groups"));  // lm-eval writes it for aggregating groups only
  const json& cfg = doc["config"];
  EXPECT_EQ(cfg["model"], "assay-native");
  EXPECT_EQ(cfg["batch_size"], 16);
  EXPECT_EQ(cfg["batch_sizes"], json::array());
  EXPECT_TRUE(cfg["limit"].is_null());
  EXPECT_TRUE(cfg.contains("device"));
  EXPECT_TRUE(cfg.contains("gen_kwargs"));
  EXPECT_EQ(cfg["bootstrap_iters"], 0);
  EXPECT_EQ(doc["model_name"], "runs/a:b/final");
  EXPECT_EQ(doc["model_name_sanitized"], "runs__a__b__final");
  EXPECT_EQ(doc["date"], 1700000000.5);
  EXPECT_EQ(doc["end_time"], 1700000002.5);
  EXPECT_EQ(doc["task_hashes"]["ood"], "feed");
  EXPECT_EQ(doc["assay"]["run_id"], 42);
  EXPECT_EQ(doc["assay"]["suite_version"], "1.0+12345678");
  EXPECT_EQ(model_name_from_args("base_url=http://h/v1/completions,model=gpt2,num_concurrent=4"), "gpt2");
}

TEST(EvalsLmEvalFiles, GenKwargsReachTheTaskConfig) {
  Gsm8kConfig cfg;
  auto g = parse_gen_kwargs("temperature=0.7,top_p=0.9,do_sample=True,seed=1,max_gen_toks=64").value();
  apply_gen_kwargs(g, &cfg);
  EXPECT_EQ(cfg.max_gen_toks, 64);
  const json tc = gsm8k_task_config(cfg);
  EXPECT_EQ(tc["generation_kwargs"],
            (json{{"until", {"Question:", "</s>", "<|im_end|>"}}, {"do_sample", true}, {"temperature", 0.7},
                  {"max_gen_toks", 64}, {"top_p", 0.9}, {"seed", 1}}));
  EXPECT_EQ(tc["metadata"]["version"], 3.0);
  EXPECT_EQ(gen_kwargs_json(g),
            (json{{"temperature", 0.7}, {"top_p", 0.9}, {"do_sample", true}, {"seed", 1}, {"max_gen_toks", 64}}));
  EXPECT_TRUE(gen_kwargs_json(GenKwargs{}).is_null());
}

}  // namespace
}  // namespace assay::evals
