#include "leftovers.h"

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace assay::worker {

namespace fs = std::filesystem;

namespace {

fs::path session_file(const std::string& work_dir, std::pair<int64_t, int> key) {
  return fs::path(work_dir) / "sessions" /
         (std::to_string(key.first) + "." + std::to_string(key.second));
}

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

void record_session(const std::string& work_dir, std::pair<int64_t, int> key, pid_t sid) {
  fs::path p = session_file(work_dir, key);
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  std::ofstream(p) << sid << "\n";
}

void forget_session(const std::string& work_dir, std::pair<int64_t, int> key) {
  std::error_code ec;
  fs::remove(session_file(work_dir, key), ec);
}

int kill_leftover_sessions(const std::string& work_dir,
                           const std::function<void(const std::string&)>& say) {
  int killed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(work_dir) / "sessions", ec)) {
    std::string name = e.path().filename().string();  // <run>.<attempt>
    long sid = 0;
    std::ifstream(e.path()) >> sid;
    int64_t run_id = std::atoll(name.c_str());
    if (sid > 1 && run_id > 0) {
      std::vector<pid_t> left = members(static_cast<pid_t>(sid), run_id);
      for (pid_t p : left) kill(p, SIGKILL);
      if (!left.empty()) {
        say("run " + name + ": killed " + std::to_string(left.size()) +
            " process(es) left running by an earlier start of this worker");
      }
      killed += static_cast<int>(left.size());
    }
    fs::remove(e.path(), ec);
  }
  return killed;
}

}  // namespace assay::worker
