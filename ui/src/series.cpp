// One metric series of one run, downsampled in SQL when long.
//
// A series spanning more than max_points steps is cut into max_points/3
// buckets of equal step width, read in one scan of the primary key; each
// bucket contributes its minimum (drawn at the bucket's first step), its
// maximum (at its last step) and, when it holds non-finite values (stored
// as NULL), a null point between them so the chart shows a gap. A spike of
// one point therefore survives any reduction, which averaging or striding
// would lose; its step is known to within one bucket (bucket_steps).
#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "api_internal.h"

namespace assay::ui {

namespace {

struct Point {
  int64_t step;
  std::optional<double> value;
  double time;  // wall_time, unix seconds (a bucket's first/last)
};

std::optional<double> number_of(const store::Cell& c) {
  if (auto d = std::get_if<double>(&c)) return *d;
  if (auto i = std::get_if<int64_t>(&c)) return static_cast<double>(*i);
  return std::nullopt;
}

int64_t int_of(const store::Cell& c) {
  if (auto i = std::get_if<int64_t>(&c)) return *i;
  if (auto d = std::get_if<double>(&c)) return static_cast<int64_t>(*d);
  return 0;
}

}  // namespace

Result<int64_t> parse_positive(const std::string& s, const char* what) {
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used == s.size() && v > 0) return static_cast<int64_t>(v);
  } catch (const std::exception&) {
  }
  return Status::Invalid(std::string("query parameter '") + what + "': expected an integer > 0, got '" +
                         s + "'");
}

Result<Json> series(const std::string& db_path, int64_t run_id,
                    const std::map<std::string, std::string>& query, const ApiLimits& limits) {
  auto key_it = query.find("key");
  if (key_it == query.end() || key_it->second.empty())
    return Status::Invalid("query parameter 'key': missing (the metric name, e.g. key=loss)");
  const std::string& key = key_it->second;
  int64_t max_points = int64_t(kMaxSeriesPoints);
  if (auto it = query.find("max_points"); it != query.end()) {
    ASSAY_ASSIGN_OR_RETURN(max_points, parse_positive(it->second, "max_points"));
    if (max_points < 3 || max_points > int64_t(kMaxSeriesPoints))
      return Status::Invalid("query parameter 'max_points': expected 3.." +
                             std::to_string(kMaxSeriesPoints) + ", got " + std::to_string(max_points));
  }
  const std::string id = std::to_string(run_id);
  auto head_sql = read_sql(db_path,
      "SELECT r.attempt, (SELECT k.id FROM metric_keys k WHERE k.name = " + sql_quote(key) +
      ") FROM runs r WHERE r.id = " + id, limits);
  ASSAY_ASSIGN_OR_RETURN(auto head, std::move(head_sql));
  if (head.rows.empty()) return Status::NotFound("run " + id + ": no such run");
  int64_t attempt = int_of(head.rows[0][0]);
  if (auto it = query.find("attempt"); it != query.end()) {
    ASSAY_ASSIGN_OR_RETURN(attempt, parse_positive(it->second, "attempt"));
  }
  if (std::holds_alternative<std::monostate>(head.rows[0][1]))
    return Status::NotFound("run " + id + ": no metric named '" + key + "'");
  // A zoomed chart asks for its step range only: the same reduction over
  // fewer steps shows the detail a whole-run view buckets away.
  std::string range;
  Json range_json = Json::object();
  for (const char* bound : {"from", "to"}) {
    auto it = query.find(bound);
    if (it == query.end() || it->second.empty()) continue;
    int64_t v = 0;
    try {
      size_t used = 0;
      v = std::stoll(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      return Status::Invalid(std::string("query parameter '") + bound +
                             "': expected an integer step, got '" + it->second + "'");
    }
    range += std::string(" AND step ") + (bound[0] == 'f' ? ">= " : "<= ") + std::to_string(v);
    range_json[bound] = v;
  }
  // Wall times only when asked (x = time): two more aggregates cost a long
  // series' scan about a third more.
  const bool with_times = query.count("times") && query.at("times") == "1";
  const std::string where = " FROM metrics WHERE run_id = " + id + " AND attempt = " +
                            std::to_string(attempt) + " AND key_id = " +
                            std::to_string(int_of(head.rows[0][1])) + range;
  // First and last step from the primary key (no scan).
  auto span_sql = read_sql(db_path, "SELECT (SELECT MIN(step)" + where + "), (SELECT MAX(step)" +
                                        where + ")", limits);
  ASSAY_ASSIGN_OR_RETURN(auto span, std::move(span_sql));
  const bool any = !std::holds_alternative<std::monostate>(span.rows[0][0]);
  const int64_t lo = int_of(span.rows[0][0]), hi = int_of(span.rows[0][1]);

  // `assay ui` reads any database file, whose steps may span all of int64:
  // the span is taken in unsigned arithmetic, where it cannot overflow.
  const uint64_t span_steps = uint64_t(hi) - uint64_t(lo);
  std::vector<Point> pts;
  int64_t count = 0, nulls = 0, width = 0;
  if (!any || span_steps < uint64_t(max_points)) {
    // At most max_points distinct steps: every point.
    auto all_sql = read_sql(db_path, std::string("SELECT step, value, ") +
                                         (with_times ? "wall_time" : "0") + where + " ORDER BY step",
                            limits);
    ASSAY_ASSIGN_OR_RETURN(auto all, std::move(all_sql));
    for (auto& row : all.rows) {
      pts.push_back({int_of(row[0]), number_of(row[1]), number_of(row[2]).value_or(0)});
      nulls += pts.back().value ? 0 : 1;
    }
    count = int64_t(pts.size());
  } else {
    // One scan: per bucket its step range, min, max, count and NULLs.
    const int64_t buckets = max_points / 3;
    width = int64_t(span_steps / uint64_t(buckets)) + 1;  // steps per bucket; span / width < buckets
    const std::string b = "(step - " + std::to_string(lo) + ") / " + std::to_string(width);
    auto agg_sql = read_sql(db_path,
        std::string("SELECT MIN(step), MAX(step), MIN(value), MAX(value), COUNT(*), SUM(value IS NULL), ") +
        (with_times ? "MIN(wall_time), MAX(wall_time)" : "0, 0") +
        where + " GROUP BY " + b + " ORDER BY " + b, limits);
    ASSAY_ASSIGN_OR_RETURN(auto agg, std::move(agg_sql));
    for (auto& row : agg.rows) {
      const int64_t first = int_of(row[0]), last = int_of(row[1]);
      const int64_t n = int_of(row[4]), gaps = int_of(row[5]);
      count += n;
      nulls += gaps;
      auto vmin = number_of(row[2]), vmax = number_of(row[3]);
      const double t0 = number_of(row[6]).value_or(0), t1 = number_of(row[7]).value_or(0);
      if (vmin) pts.push_back({first, vmin, t0});
      if (gaps > 0) pts.push_back({first + (last - first) / 2, std::nullopt, (t0 + t1) / 2});
      if (vmax && (last != first || !vmin || *vmax != *vmin)) pts.push_back({last, vmax, t1});
    }
    pts.erase(std::unique(pts.begin(), pts.end(),
                          [](const Point& a, const Point& c) { return a.step == c.step; }),
              pts.end());
  }
  Json steps = Json::array(), values = Json::array(), times = Json::array();
  for (const auto& p : pts) {
    steps.push_back(p.step);
    times.push_back(p.time);
    if (p.value && std::isfinite(*p.value)) values.push_back(*p.value);
    else values.push_back(nullptr);
  }
  return Json{{"run_id", run_id},  {"key", key},         {"attempt", attempt},
              {"points", count},   {"first_step", any ? Json(lo) : Json()},
              {"last_step", any ? Json(hi) : Json()},
              {"null_points", nulls}, {"downsampled", width > 0},
              {"bucket_steps", width > 0 ? Json(width) : Json()},
              {"range", std::move(range_json)},
              {"steps", std::move(steps)}, {"values", std::move(values)},
              {"times", with_times ? std::move(times) : Json()}};
}

}  // namespace assay::ui
