// Predictions files for gsm8k --predictions: plain JSONL (one line per
// document) and lm-eval samples files (one line per document per filter).
// See evals_gsm8k.h.
#include <algorithm>
#include <fstream>
#include <map>

#include "assay/evals_gsm8k.h"
#include "assay/jsonl.h"

namespace assay::evals {
namespace {

using json = nlohmann::json;

// Nested lists such as lm-eval's resps [[text]] give their first leaf.
const json* first_leaf(const json& v) {
  const json* p = &v;
  while (p->is_array() && !p->empty()) p = &(*p)[0];
  return p;
}

bool is_lm_eval_sample(const json& j) {
  return j.contains("doc_id") && j.contains("filter") && j.contains("resps");
}

struct Line {
  json j;
  std::string where;  // "<path>:<line>"
};

// Every non-empty line parsed as a JSON object.
Result<std::vector<Line>> read_lines(const std::string& path) {
  std::vector<Line> out;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "predictions file", [&](const json& j, const std::string& where) {
        out.push_back({j, where});
        return Status::Ok();
      }));
  return out;
}

Result<std::string> string_field(const Line& l, const std::string& field, const char* flag) {
  const json* p = first_leaf(l.j[field]);
  if (!p->is_string())
    return Status::Invalid(l.where + ": field \"" + field + "\" must be a string, got " + p->dump() +
                           " (" + flag + ")");
  return p->get<std::string>();
}

Result<const Gsm8kDoc*> test_doc(const Line& l, int64_t doc, const std::vector<Gsm8kDoc>& test) {
  if (doc < 0 || doc >= static_cast<int64_t>(test.size()))
    return Status::Invalid(l.where + ": doc " + std::to_string(doc) +
                           " is outside the GSM8K test split (0.." + std::to_string(test.size() - 1) +
                           ")");
  return &test[static_cast<size_t>(doc)];
}

Status read_plain(const std::vector<Line>& lines, const PredictionsOptions& o, Gsm8kPredictions* p) {
  int64_t index = 0;
  for (const Line& l : lines) {
    if (o.limit > 0 && index >= o.limit) break;
    if (!l.j.contains(o.pred_field))
      return Status::Invalid(l.where + ": missing prediction field \"" + o.pred_field +
                             "\" (set --pred-field)");
    const json* r = first_leaf(l.j[o.pred_field]);
    if (!r->is_string())
      return Status::Invalid(l.where + ": field \"" + o.pred_field + "\" must be a string, got " +
                             r->dump());
    int64_t doc = index;
    if (l.j.contains("doc_id") && l.j["doc_id"].is_number_integer()) doc = l.j["doc_id"].get<int64_t>();
    std::string ref, question;
    if (o.test) {
      ASSAY_ASSIGN_OR_RETURN(const Gsm8kDoc* d, test_doc(l, doc, *o.test));
      ref = d->answer;
      question = d->question;
    } else {
      if (!l.j.contains(o.ref_field))
        return Status::Invalid(l.where + ": missing reference field \"" + o.ref_field +
                               "\" (set --ref-field, or --refs-from-test)");
      const json* f = first_leaf(l.j[o.ref_field]);
      ref = f->is_string() ? f->get<std::string>() : f->dump();
    }
    p->doc_ids.push_back(doc);
    p->responses.push_back(r->get<std::string>());
    p->references.push_back(std::move(ref));
    p->prompts.emplace_back();
    p->questions.push_back(std::move(question));
    ++index;
  }
  return Status::Ok();
}

// One lm-eval samples line per document: the line of o.filter, else the first.
Status read_lm_eval(const std::vector<Line>& lines, const PredictionsOptions& o, Gsm8kPredictions* p) {
  std::map<int64_t, const Line*> chosen;
  std::map<std::pair<int64_t, std::string>, const Line*> seen;
  for (const Line& l : lines) {
    if (!is_lm_eval_sample(l.j))
      return Status::Invalid(l.where + ": expected an lm-eval samples line (doc_id, filter, resps), "
                             "as on the file's first line");
    if (!l.j["doc_id"].is_number_integer() || !l.j["filter"].is_string())
      return Status::Invalid(l.where + ": doc_id must be an integer and filter a string");
    const int64_t doc = l.j["doc_id"].get<int64_t>();
    const std::string filter = l.j["filter"].get<std::string>();
    auto [it, fresh] = seen.emplace(std::make_pair(doc, filter), &l);
    if (!fresh)
      return Status::Invalid(l.where + ": doc_id " + std::to_string(doc) + " appears twice for filter \"" +
                             filter + "\" (first at " + it->second->where + ")");
    if (o.filter.empty() ? !chosen.count(doc) : filter == o.filter) chosen[doc] = &l;
  }
  if (!o.filter.empty() && chosen.empty())
    return Status::Invalid(o.path + ": no line has filter \"" + o.filter + "\" (lm-eval samples file)");
  for (const auto& [doc, lp] : chosen) {
    if (o.limit > 0 && static_cast<int64_t>(p->doc_ids.size()) >= o.limit) break;
    const Line& l = *lp;
    const bool own_field = l.j.contains(o.pred_field);
    ASSAY_ASSIGN_OR_RETURN(std::string resp, string_field(l, own_field ? o.pred_field : "resps",
                                                          "--pred-field"));
    const json doc_obj = l.j.contains("doc") && l.j["doc"].is_object() ? l.j["doc"] : json::object();
    std::string ref, question;
    if (doc_obj.contains("question") && doc_obj["question"].is_string())
      question = doc_obj["question"].get<std::string>();
    if (o.test) {
      ASSAY_ASSIGN_OR_RETURN(const Gsm8kDoc* d, test_doc(l, doc, *o.test));
      ref = d->answer;
      question = d->question;
    } else if (l.j.contains(o.ref_field)) {
      ASSAY_ASSIGN_OR_RETURN(ref, string_field(l, o.ref_field, "--ref-field"));
    } else if (l.j.contains("target")) {
      ASSAY_ASSIGN_OR_RETURN(ref, string_field(l, "target", "lm-eval target"));
    } else if (doc_obj.contains("answer") && doc_obj["answer"].is_string()) {
      ref = doc_obj["answer"].get<std::string>();
    } else {
      return Status::Invalid(l.where + ": no reference: neither \"" + o.ref_field +
                             "\", \"target\" nor doc.answer (set --ref-field, or --refs-from-test)");
    }
    std::string prompt;
    if (l.j.contains("arguments") && l.j["arguments"].is_object()) {
      const json& a = l.j["arguments"];
      if (a.contains("gen_args_0") && a["gen_args_0"].is_object() && a["gen_args_0"].contains("arg_0") &&
          a["gen_args_0"]["arg_0"].is_string())
        prompt = a["gen_args_0"]["arg_0"].get<std::string>();
    }
    p->doc_ids.push_back(doc);
    p->responses.push_back(std::move(resp));
    p->references.push_back(std::move(ref));
    p->prompts.push_back(std::move(prompt));
    p->questions.push_back(std::move(question));
  }
  return Status::Ok();
}

}  // namespace

Result<Gsm8kPredictions> read_gsm8k_predictions(const PredictionsOptions& opts) {
  ASSAY_ASSIGN_OR_RETURN(std::vector<Line> lines, read_lines(opts.path));
  Gsm8kPredictions p;
  p.lm_eval_samples = !lines.empty() && is_lm_eval_sample(lines[0].j);
  ASSAY_RETURN_IF_ERROR(p.lm_eval_samples ? read_lm_eval(lines, opts, &p) : read_plain(lines, opts, &p));
  if (p.responses.empty()) return Status::Invalid(opts.path + ": no predictions");
  return p;
}

Result<Gsm8kReport> score_gsm8k_predictions(const Gsm8kPredictions& p, const Gsm8kConfig& cfg) {
  ASSAY_ASSIGN_OR_RETURN(Gsm8kReport r, score_gsm8k(p.responses, p.references, cfg));
  for (size_t i = 0; i < r.samples.size(); ++i) {
    if (i < p.doc_ids.size()) r.samples[i].doc_id = p.doc_ids[i];
    if (i < p.prompts.size()) r.samples[i].prompt = p.prompts[i];
    if (i < p.questions.size()) r.samples[i].question = p.questions[i];
  }
  r.results["task_hashes"]["gsm8k"] = gsm8k_task_hash(r);
  return r;
}

}  // namespace assay::evals
