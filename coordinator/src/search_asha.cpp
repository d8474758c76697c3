// ASHA rung state and decisions (assay/search.h documents the rule).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "assay/search.h"

namespace assay::coordinator {
namespace {

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// Whether a is strictly better than b in the objective's direction; NaN is
// worse than every number and ties with NaN.
bool strictly_better(double a, double b, Mode m) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return m == Mode::kMin ? a < b : a > b;
}

}  // namespace

std::vector<int64_t> rung_steps(const AshaConfig& c, int bracket) {
  std::vector<int64_t> out;
  if (bracket < 0 || bracket >= c.brackets || c.min_step < 1 || c.reduction_factor < 2) return out;
  const int64_t eta = c.reduction_factor;
  int64_t r = c.min_step;
  // r = min_step * eta^bracket, stopping before it would pass max_step (and
  // before the multiplication could overflow).
  for (int b = 0; b < bracket; ++b) {
    if (r > c.max_step / eta) return out;
    r *= eta;
  }
  while (r <= c.max_step) {
    out.push_back(r);
    if (r > c.max_step / eta) break;
    r *= eta;
  }
  return out;
}

int bracket_of(const AshaConfig& c, int run_index) {
  int b = c.brackets < 1 ? 1 : c.brackets;
  int i = run_index % b;
  return i < 0 ? i + b : i;
}

std::string RungDecision::reason(const AshaConfig& c) const {
  std::string s = "rung " + std::to_string(rung) + " (step " + std::to_string(rung_step) + ")";
  if (c.brackets > 1) s = "bracket " + std::to_string(bracket) + " " + s;
  s += ": ";
  if (values.size() == 1 && c.objectives.size() == 1) {
    s += c.objectives[0].metric + " " + num(values[0]);
  } else {
    s += "[";
    for (size_t j = 0; j < values.size(); ++j) {
      if (j) s += ", ";
      s += (j < c.objectives.size() ? c.objectives[j].metric + " " : "") + num(values[j]);
    }
    s += "]";
  }
  s += " at step " + std::to_string(reported_step) + " ranks " + std::to_string(better + 1) +
       " of " + std::to_string(n) + ", keep " + std::to_string(keep);
  if (values.size() == 1) s += " (cut-off " + num(cutoff) + ")";
  if (final_rung) return s + ": full budget, complete";
  return s + (proceed ? ": continue" : ": stop");
}

RungRecord RungDecision::record() const {
  return RungRecord{run_id, bracket, rung, reported_step, values, proceed};
}

AshaState::AshaState(AshaConfig c) : c_(std::move(c)) {
  if (c_.brackets < 1) c_.brackets = 1;
  rungs_.resize(static_cast<size_t>(c_.brackets));
  for (int b = 0; b < c_.brackets; ++b) rungs_[b].resize(rung_steps(c_, b).size());
}

const std::map<int64_t, std::vector<double>>& AshaState::recorded(int bracket, int rung) const {
  static const std::map<int64_t, std::vector<double>> kEmpty;
  if (bracket < 0 || bracket >= static_cast<int>(rungs_.size())) return kEmpty;
  if (rung < 0 || rung >= static_cast<int>(rungs_[bracket].size())) return kEmpty;
  return rungs_[bracket][rung];
}

bool AshaState::stopped(int64_t run_id) const {
  auto it = runs_.find(run_id);
  return it != runs_.end() && it->second.stopped;
}

int64_t AshaState::next_rung_step(int64_t run_id, int run_index) const {
  auto it = runs_.find(run_id);
  int b = it == runs_.end() ? bracket_of(c_, run_index) : it->second.bracket;
  int decided = it == runs_.end() ? 0 : it->second.decided;
  if (it != runs_.end() && it->second.stopped) return -1;
  auto steps = rung_steps(c_, b);
  return decided < static_cast<int>(steps.size()) ? steps[decided] : -1;
}

RungDecision AshaState::decide(int64_t run_id, int bracket, int rung, int64_t step,
                               const std::vector<double>& values) {
  auto& at = rungs_[bracket][rung];
  at[run_id] = values;
  RungDecision d;
  d.run_id = run_id;
  d.bracket = bracket;
  d.rung = rung;
  d.rung_step = rung_steps(c_, bracket)[rung];
  d.reported_step = step;
  d.values = values;
  d.n = static_cast<int>(at.size());
  d.keep = std::max(1, d.n / c_.reduction_factor);
  d.final_rung = d.rung_step == c_.max_step;
  d.cutoff = std::numeric_limits<double>::quiet_NaN();
  bool nan_stop = false;
  if (values.size() == 1) {
    const Mode m = c_.objectives.empty() ? Mode::kMin : c_.objectives[0].mode;
    std::vector<double> all;
    all.reserve(at.size());
    for (const auto& [id, v] : at) {
      all.push_back(v[0]);
      if (id != run_id && strictly_better(v[0], values[0], m)) ++d.better;
    }
    std::sort(all.begin(), all.end(), [m](double a, double b) { return strictly_better(a, b, m); });
    d.cutoff = all[static_cast<size_t>(d.keep - 1)];
    nan_stop = std::isnan(values[0]);
  } else {
    std::vector<std::vector<double>> pts;
    std::vector<Mode> modes;
    for (const auto& o : c_.objectives) modes.push_back(o.mode);
    size_t self = 0;
    for (const auto& [id, v] : at) {
      if (id == run_id) self = pts.size();
      pts.push_back(v);
    }
    auto ranks = nondominated_ranks(pts, modes);
    auto crowd = crowding_distances(pts, modes, ranks);
    for (size_t j = 0; j < pts.size(); ++j)
      if (ranks[j] < ranks[self] || (ranks[j] == ranks[self] && crowd[j] > crowd[self]))
        ++d.better;
  }
  d.proceed = d.final_rung || (d.better < d.keep && !nan_stop);
  return d;
}

Result<std::vector<RungDecision>> AshaState::report(int64_t run_id, int run_index, int64_t step,
                                                    const std::vector<double>& values) {
  const size_t want = c_.objectives.empty() ? 1 : c_.objectives.size();
  if (values.size() != want)
    return Status::Invalid("run " + std::to_string(run_id) + ": expected " +
                           std::to_string(want) + " objective value(s), got " +
                           std::to_string(values.size()));
  auto [it, fresh] = runs_.try_emplace(run_id);
  if (fresh) it->second.bracket = bracket_of(c_, run_index);
  RunState& rs = it->second;
  std::vector<RungDecision> out;
  if (rs.stopped) return out;
  const auto steps = rung_steps(c_, rs.bracket);
  // Decided rung by rung, lowest first: a sparse report past several rungs
  // must survive each of them.
  while (rs.decided < static_cast<int>(steps.size()) && step >= steps[rs.decided]) {
    out.push_back(decide(run_id, rs.bracket, rs.decided, step, values));
    ++rs.decided;
    if (!out.back().proceed) {
      rs.stopped = true;
      break;
    }
  }
  return out;
}

Result<AshaState> AshaState::rebuild(AshaConfig c, const std::vector<RungRecord>& records) {
  AshaState st(std::move(c));
  const size_t want = st.c_.objectives.empty() ? 1 : st.c_.objectives.size();
  for (size_t i = 0; i < records.size(); ++i) {
    const RungRecord& r = records[i];
    const std::string what = "rung record " + std::to_string(i) + " (run " +
                             std::to_string(r.run_id) + ", bracket " + std::to_string(r.bracket) +
                             ", rung " + std::to_string(r.rung) + ")";
    if (r.bracket < 0 || r.bracket >= st.c_.brackets)
      return Status::Corruption(what + ": bracket out of range 0.." +
                                std::to_string(st.c_.brackets - 1));
    const auto steps = rung_steps(st.c_, r.bracket);
    if (r.rung < 0 || r.rung >= static_cast<int>(steps.size()))
      return Status::Corruption(what + ": rung out of range 0.." +
                                std::to_string(static_cast<int>(steps.size()) - 1));
    if (r.values.size() != want)
      return Status::Corruption(what + ": expected " + std::to_string(want) +
                                " value(s), got " + std::to_string(r.values.size()));
    if (r.reported_step < steps[r.rung])
      return Status::Corruption(what + ": reported step " + std::to_string(r.reported_step) +
                                " is before the rung step " + std::to_string(steps[r.rung]));
    auto [it, fresh] = st.runs_.try_emplace(r.run_id);
    if (fresh) it->second.bracket = r.bracket;
    RunState& rs = it->second;
    if (rs.bracket != r.bracket)
      return Status::Corruption(what + ": the run was in bracket " + std::to_string(rs.bracket));
    if (rs.stopped) return Status::Corruption(what + ": the run was stopped at an earlier rung");
    if (rs.decided != r.rung)
      return Status::Corruption(what + ": expected rung " + std::to_string(rs.decided) +
                                " next for this run");
    RungDecision d = st.decide(r.run_id, r.bracket, r.rung, r.reported_step, r.values);
    if (d.proceed != r.proceed)
      return Status::Corruption(what + ": recorded " + (r.proceed ? "continue" : "stop") +
                                " but the records before it decide " + d.reason(st.c_));
    ++rs.decided;
    rs.stopped = !d.proceed;
  }
  return st;
}

}  // namespace assay::coordinator
