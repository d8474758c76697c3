// Helpers shared by every Backend implementation.
#include <string>

#include "assay/evals_backend.h"

namespace assay::evals {

LoglikResult to_loglik(const TokenScores& s) {
  LoglikResult r;
  r.is_greedy = true;
  for (size_t i = 0; i < s.logprobs.size(); ++i) {
    r.logprob += s.logprobs[i];
    if (i >= s.is_top.size() || !s.is_top[i]) r.is_greedy = false;
  }
  r.n_tokens = s.n_tokens();
  return r;
}

Result<std::vector<LoglikResult>> loglikelihood(Backend& backend,
                                                const std::vector<ScoreRequest>& reqs) {
  ASSAY_ASSIGN_OR_RETURN(auto scores, backend.score(reqs));
  std::vector<LoglikResult> out;
  out.reserve(scores.size());
  for (const auto& s : scores) out.push_back(to_loglik(s));
  return out;
}

Result<std::vector<double>> mean_nll(Backend& backend, const std::vector<std::string>& texts) {
  std::vector<ScoreRequest> reqs;
  reqs.reserve(texts.size());
  for (const auto& t : texts) reqs.push_back({"", t});
  ASSAY_ASSIGN_OR_RETURN(auto scores, backend.score(reqs));
  std::vector<double> out;
  out.reserve(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    if (scores[i].logprobs.empty())
      return Status::Invalid("text " + std::to_string(i) +
                             ": no scored tokens (a text needs at least 2 tokens without a "
                             "start token)");
    double s = 0;
    for (double lp : scores[i].logprobs) s -= lp;
    out.push_back(s / static_cast<double>(scores[i].logprobs.size()));
  }
  return out;
}

std::string truncate_at_stop(const std::string& text, const std::vector<std::string>& stop) {
  size_t cut = text.size();
  for (const auto& s : stop) {
    if (s.empty()) continue;
    size_t p = text.find(s);
    if (p != std::string::npos && p < cut) cut = p;
  }
  return text.substr(0, cut);
}

}  // namespace assay::evals
