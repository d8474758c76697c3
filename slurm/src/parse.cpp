// Parsers of what SLURM's commands print, the triage of job states, and the
// autoscaling decision.
#include <algorithm>
#include <charconv>
#include <sstream>

#include "assay/slurm.h"

namespace assay::slurm {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l)) {
    while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

bool to_int(const std::string& s, int* out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::string get(const std::map<std::string, std::string>& kv, const char* k) {
  auto it = kv.find(k);
  return it == kv.end() ? "" : it->second;
}

// "CANCELLED by 0" -> "CANCELLED"; sacct writes the canceller after the state.
std::string first_word(const std::string& s) { return s.substr(0, s.find(' ')); }

JobRecord record_of(const std::map<std::string, std::string>& kv) {
  JobRecord r;
  r.id = get(kv, "JobId");
  r.name = get(kv, "JobName");
  if (r.name.empty()) r.name = get(kv, "Name");  // jobcomp/filetxt
  r.state = first_word(get(kv, "JobState"));
  r.reason = get(kv, "Reason");
  r.exit_code = get(kv, "ExitCode");
  r.node_list = get(kv, "NodeList");
  r.start_time = get(kv, "StartTime");
  r.end_time = get(kv, "EndTime");
  return r;
}

}  // namespace

Result<std::vector<QueuedJob>> parse_squeue(const std::string& out) {
  std::vector<QueuedJob> jobs;
  for (const auto& l : lines(out)) {
    auto f = split(l, '|');
    if (f.size() != 10) {
      return Status::Corruption("squeue line '" + l + "': expected 10 '|'-separated fields (" +
                                kSqueueFormat + "), got " + std::to_string(f.size()));
    }
    QueuedJob j;
    j.id = f[0];
    j.name = f[1];
    j.state = f[2];
    j.reason = f[3];
    if (!to_int(f[4], &j.nodes) || !to_int(f[5], &j.cpus)) {
      return Status::Corruption("squeue line '" + l + "': nodes '" + f[4] + "' and cpus '" + f[5] +
                                "' must be integers");
    }
    j.gres = f[6];
    j.time_used = f[7];
    j.time_limit = f[8];
    j.node_list = f[9];
    jobs.push_back(std::move(j));
  }
  return jobs;
}

std::map<std::string, std::string> parse_key_values(const std::string& line) {
  // Keys start a token: a space (or the line start), then [A-Za-z:/_]+ and '='.
  std::map<std::string, std::string> kv;
  std::vector<std::pair<size_t, size_t>> keys;  // (key start, '=' position)
  size_t i = 0;
  while (i < line.size()) {
    if (i == 0 || line[i - 1] == ' ') {
      size_t j = i;
      while (j < line.size() && (std::isalnum(static_cast<unsigned char>(line[j])) ||
                                 line[j] == '_' || line[j] == ':' || line[j] == '/'))
        ++j;
      if (j > i && j < line.size() && line[j] == '=' &&
          std::isalpha(static_cast<unsigned char>(line[i]))) {
        keys.emplace_back(i, j);
        i = j + 1;
        continue;
      }
    }
    ++i;
  }
  for (size_t k = 0; k < keys.size(); ++k) {
    size_t vstart = keys[k].second + 1;
    size_t vend = k + 1 < keys.size() ? keys[k + 1].first : line.size();
    std::string v = line.substr(vstart, vend - vstart);
    while (!v.empty() && v.back() == ' ') v.pop_back();
    kv[line.substr(keys[k].first, keys[k].second - keys[k].first)] = v;
  }
  return kv;
}

std::vector<JobRecord> parse_scontrol_jobs(const std::string& out) {
  std::vector<JobRecord> jobs;
  for (const auto& l : lines(out)) {
    auto kv = parse_key_values(l);
    if (kv.count("JobId")) jobs.push_back(record_of(kv));
  }
  return jobs;
}

std::vector<JobRecord> parse_jobcomp(const std::string& log) {
  std::vector<JobRecord> jobs;
  for (const auto& l : lines(log)) {
    auto kv = parse_key_values(l);
    if (!kv.count("JobId")) continue;
    JobRecord r = record_of(kv);
    auto same = std::find_if(jobs.begin(), jobs.end(), [&](auto& j) { return j.id == r.id; });
    if (same != jobs.end()) *same = r;  // a requeued job ends again: the last line is current
    else jobs.push_back(r);
  }
  return jobs;
}

std::vector<JobRecord> parse_sacct(const std::string& out) {
  std::vector<JobRecord> jobs;
  for (const auto& l : lines(out)) {
    auto f = split(l, '|');
    if (f.size() < 7) continue;
    // sacct -P does not escape its delimiter: a job name holding '|' spans
    // several fields. The name is the only free text, so the fields after
    // it are counted from the end.
    const size_t n = f.size();
    JobRecord r;
    r.id = f[0];
    r.name = f[1];
    for (size_t i = 2; i + 5 < n; ++i) r.name += "|" + f[i];
    r.state = first_word(f[n - 5]);
    r.exit_code = f[n - 4];
    r.node_list = f[n - 3];
    r.start_time = f[n - 2];
    r.end_time = f[n - 1];
    jobs.push_back(std::move(r));
  }
  return jobs;
}

std::string triage_reason(const std::string& state) {
  static const std::map<std::string, std::string> kReasons = {
      {"OUT_OF_MEMORY", "slurm_oom"},       {"TIMEOUT", "slurm_timeout"},
      {"NODE_FAIL", "slurm_node_fail"},     {"PREEMPTED", "slurm_preempted"},
      {"CANCELLED", "slurm_cancelled"},     {"FAILED", "slurm_failed"},
      {"BOOT_FAIL", "slurm_boot_fail"},     {"DEADLINE", "slurm_deadline"},
  };
  auto it = kReasons.find(first_word(state));
  return it == kReasons.end() ? "" : it->second;
}

std::string job_of_worker(const std::string& worker_id) {
  const std::string p = "slurm-";
  if (worker_id.rfind(p, 0) != 0) return "";
  size_t end = worker_id.find('-', p.size());
  std::string job = worker_id.substr(p.size(), end == std::string::npos ? end : end - p.size());
  if (job.empty() || job.find_first_not_of("0123456789_") != std::string::npos) return "";
  return job;
}

int jobs_to_submit(const ScaleInput& in) {
  if (in.unplaceable_runs <= 0 || in.max_jobs <= 0) return 0;
  const int per_job = std::max(1, in.runs_per_job);
  // Jobs that will bring workers without our doing anything more.
  const int on_the_way = std::max(0, in.pending_jobs) + std::max(0, in.starting_workers);
  const int needed = (in.unplaceable_runs + per_job - 1) / per_job;
  const int room = in.max_jobs - std::max(0, in.pending_jobs) - std::max(0, in.running_jobs);
  return std::max(0, std::min(needed - on_the_way, room));
}

}  // namespace assay::slurm
