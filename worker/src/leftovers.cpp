#include "leftovers.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

namespace assay::worker {

namespace fs = std::filesystem;

namespace {

// Session id of a process from /proc/<pid>/stat (field 6), or -1. The command
// name (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
pid_t session_of_proc(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  long ppid = 0, pgrp = 0, session = -1;
  if (!(rest >> state >> ppid >> pgrp >> session)) return -1;
  if (state == "Z") return -1;  // already dead, waiting to be reaped
  return static_cast<pid_t>(session);
}

bool has_env(const std::string& pid, const std::string& entry) {
  std::ifstream in("/proc/" + pid + "/environ", std::ios::binary);
  std::string var;
  while (std::getline(in, var, '\0'))
    if (var == entry) return true;
  return false;
}

std::vector<pid_t> members(pid_t sid, int64_t run_id) {
  std::vector<pid_t> out;
  const std::string tag = "ASSAY_RUN_ID=" + std::to_string(run_id);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (session_of_proc(name) == sid && has_env(name, tag)) out.push_back(std::atoi(name.c_str()));
  }
  return out;
}

}  // namespace

pid_t session_of(pid_t pid) { return session_of_proc(std::to_string(pid)); }

namespace {

// The journal of one work directory: "+<run>.<attempt> <sid>" when a run
// starts, "-<run>.<attempt>" when it is over, appended with O_APPEND and
// emptied (in place) whenever no run is live. One file instead of a file
// per run: creating and deleting an inode per run cost more than the rest
// of starting a run of `true`.
struct Journal {
  int fd = -1;
  int live = 0;
};

std::mutex g_journals_mu;
std::map<std::string, Journal> g_journals;

fs::path journal_path(const std::string& work_dir) { return fs::path(work_dir) / "sessions.log"; }

std::string key_text(std::pair<int64_t, int> key) {
  return std::to_string(key.first) + "." + std::to_string(key.second);
}

void append_line(const std::string& work_dir, const std::string& line, int live_delta) {
  std::lock_guard lock(g_journals_mu);
  Journal& j = g_journals[work_dir];
  if (j.fd < 0) {
    std::error_code ec;
    fs::create_directories(work_dir, ec);
    j.fd = ::open(journal_path(work_dir).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j.fd < 0) return;  // best effort, as the record always was
  }
  j.live = std::max(0, j.live + live_delta);
  if (j.live == 0 && live_delta < 0) {
    if (ftruncate(j.fd, 0) == 0) return;
  }
  (void)!::write(j.fd, line.data(), line.size());
}

// Session ids recorded and not forgotten, by "<run>.<attempt>": the journal
// replayed, plus the per-run files of older workers (<work_dir>/sessions/).
std::map<std::string, long> recorded_sessions(const std::string& work_dir) {
  std::map<std::string, long> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(work_dir) / "sessions", ec)) {
    long sid = 0;
    std::ifstream(e.path()) >> sid;
    out[e.path().filename().string()] = sid;
  }
  std::ifstream in(journal_path(work_dir));
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 2) continue;
    std::istringstream fields(line.substr(1));
    std::string name;
    long sid = 0;
    fields >> name >> sid;
    if (line[0] == '+') out[name] = sid;
    if (line[0] == '-') out.erase(name);
  }
  return out;
}

}  // namespace

void record_session(const std::string& work_dir, std::pair<int64_t, int> key, pid_t sid) {
  append_line(work_dir, "+" + key_text(key) + " " + std::to_string(sid) + "\n", +1);
}

void forget_session(const std::string& work_dir, std::pair<int64_t, int> key) {
  append_line(work_dir, "-" + key_text(key) + "\n", -1);
}

int kill_leftover_sessions(const std::string& work_dir,
                           const std::function<void(const std::string&)>& say) {
  int killed = 0;
  for (const auto& [name, sid] : recorded_sessions(work_dir)) {
    int64_t run_id = std::atoll(name.c_str());
    if (sid <= 1 || run_id <= 0) continue;
    std::vector<pid_t> left = members(static_cast<pid_t>(sid), run_id);
    for (pid_t p : left) kill(p, SIGKILL);
    if (!left.empty()) {
      say("run " + name + ": killed " + std::to_string(left.size()) +
          " process(es) left running by an earlier start of this worker");
    }
    killed += static_cast<int>(left.size());
  }
  std::error_code ec;
  fs::remove_all(fs::path(work_dir) / "sessions", ec);
  std::lock_guard lock(g_journals_mu);
  auto it = g_journals.find(work_dir);
  if (it != g_journals.end() && it->second.fd >= 0) {
    (void)!ftruncate(it->second.fd, 0);
    it->second.live = 0;
  } else {
    fs::resize_file(journal_path(work_dir), 0, ec);
  }
  return killed;
}

}  // namespace assay::worker
