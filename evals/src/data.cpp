// Eval data files: text items, perturbed answers, training transcripts.
// See evals_data.h.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "assay/json_limits.h"
#include "assay/evals_data.h"
#include "assay/jsonl.h"

namespace assay::evals {

namespace fs = std::filesystem;

Result<std::vector<TextItem>> load_text_items(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": cannot open data file");
  const bool jsonl = fs::path(path).extension() == ".jsonl" || fs::path(path).extension() == ".json";
  std::vector<TextItem> out;
  std::string line;
  int64_t lineno = 0;
  auto str = [&](const nlohmann::json& j, const char* key, const std::string& where) -> Result<std::string> {
    if (!j[key].is_string())
      return Status::Invalid(where + ": field \"" + key + "\" must be a string, got " + j[key].dump());
    return j[key].get<std::string>();
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    TextItem it;
    it.id = std::to_string(lineno);
    if (!jsonl) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      it.text = line;
      out.push_back(std::move(it));
      continue;
    }
    const std::string where = path + ":" + std::to_string(lineno);
    auto parsed = parse_json(line, where);
    if (!parsed.ok()) return Status::Corruption(parsed.status().message());
    const nlohmann::json& j = *parsed;
    if (!j.is_object()) return Status::Corruption(where + ": not a JSON object");
    if (j.contains("id")) it.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
    if (j.contains("question") && j.contains("answer")) {
      ASSAY_ASSIGN_OR_RETURN(it.question, str(j, "question", where));
      ASSAY_ASSIGN_OR_RETURN(it.answer, str(j, "answer", where));
      it.text = "Question: " + it.question + "\nAnswer: " + it.answer;
    } else if (j.contains("text")) {
      ASSAY_ASSIGN_OR_RETURN(it.text, str(j, "text", where));
    } else if (j.contains("prompt") && (j.contains("completion") || j.contains("chosen"))) {
      ASSAY_ASSIGN_OR_RETURN(std::string p, str(j, "prompt", where));
      ASSAY_ASSIGN_OR_RETURN(std::string c, str(j, j.contains("completion") ? "completion" : "chosen", where));
      it.text = p + c;
    } else {
      return Status::Invalid(where + ": expected fields text, question/answer or prompt/completion");
    }
    out.push_back(std::move(it));
  }
  if (out.empty()) return Status::Invalid(path + ": no items");
  return out;
}

Result<std::vector<PerturbedItem>> load_perturbed(const std::string& path) {
  std::vector<PerturbedItem> out;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "perturbed-answers file", [&](const nlohmann::json& j, const std::string& where) -> Status {
        PerturbedItem p;
        if (!j.contains("question") || !j["question"].is_string() ||
            !j.contains("paraphrased_answer") || !j["paraphrased_answer"].is_string())
          return Status::Invalid(where + ": expected string fields question and paraphrased_answer");
        p.question = j["question"].get<std::string>();
        p.paraphrased = j["paraphrased_answer"].get<std::string>();
        if (!j.contains("perturbed_answers") || !j["perturbed_answers"].is_array() ||
            j["perturbed_answers"].empty())
          return Status::Invalid(where + ": perturbed_answers must be a non-empty array of strings");
        for (const auto& a : j["perturbed_answers"]) {
          if (!a.is_string())
            return Status::Invalid(where + ": perturbed_answers must hold strings, got " + a.dump());
          p.perturbed.push_back(a.get<std::string>());
        }
        out.push_back(std::move(p));
        return Status::Ok();
      }));
  if (out.empty()) return Status::Invalid(path + ": no items");
  return out;
}

}  // namespace assay::evals
