// A run as its own SLURM job (assay/slurm_exec.h).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "assay/slurm.h"
#include "assay/slurm_exec.h"

namespace assay::slurm {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal = sig; }

bool plain(const std::string& v) {
  for (char c : v)
    if (std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '"' || c == '\\') return false;
  return true;
}

// New bytes of a file since *offset, up to the last newline when `lines`.
std::string read_new(const std::string& path, int64_t* offset, bool lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(*offset);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (lines) {
    size_t nl = data.rfind('\n');
    data = nl == std::string::npos ? "" : data.substr(0, nl + 1);
  }
  *offset += static_cast<int64_t>(data.size());
  return data;
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// "N:S" (scontrol/sacct ExitCode) -> the status a shell would report.
int exit_status_of(const std::string& code) {
  size_t colon = code.find(':');
  int n = std::atoi(code.substr(0, colon).c_str());
  int s = colon == std::string::npos ? 0 : std::atoi(code.substr(colon + 1).c_str());
  if (s > 0) return 128 + s;
  return n;
}

}  // namespace

Result<std::string> render_run_script(const RunJobSpec& s) {
  for (const auto& [flag, v] : {std::pair<const char*, const std::string*>{"--partition", &s.partition},
                                {"--time", &s.time}, {"--account", &s.account},
                                {"--qos", &s.qos}, {"--constraint", &s.constraint},
                                {"--name", &s.name}})
    if (!plain(*v))
      return Status::Invalid(std::string(flag) + ": '" + *v + "' holds whitespace or a quote");
  if (s.command.empty()) return Status::Invalid("the run's command is empty");
  if (s.job_dir.empty()) return Status::Invalid("--job-dir: required, got nothing");
  if (s.gpus < 0 || s.cpus < 1)
    return Status::Invalid("gpus must be >= 0 and cpus >= 1, got " + std::to_string(s.gpus) +
                           " and " + std::to_string(s.cpus));
  const std::string d = s.job_dir;
  std::ostringstream o;
  o << "#!/bin/bash\n#SBATCH --job-name=" << s.name << "\n";
  if (!s.partition.empty()) o << "#SBATCH --partition=" << s.partition << "\n";
  if (!s.time.empty()) o << "#SBATCH --time=" << s.time << "\n";
  if (!s.account.empty()) o << "#SBATCH --account=" << s.account << "\n";
  if (!s.qos.empty()) o << "#SBATCH --qos=" << s.qos << "\n";
  if (!s.constraint.empty()) o << "#SBATCH --constraint=" << s.constraint << "\n";
  o << "#SBATCH --nodes=1\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=" << s.cpus << "\n";
  if (s.gpus > 0) o << "#SBATCH --gpus=" << s.gpus << "\n";
  // The worker retries and resumes runs itself; SLURM must not rerun one.
  o << "#SBATCH --no-requeue\n"
    << "#SBATCH --output=" << d << "/job.out\n#SBATCH --error=" << d << "/job.err\n";
  for (const auto& a : s.sbatch_args) o << "#SBATCH " << a << "\n";
  if (s.gpus == 0) o << "export CUDA_VISIBLE_DEVICES=\n";
  o << "# Metric lines go to a file on the shared filesystem; the worker's\n"
       "# `assay slurm exec` relays them.\n"
    << "exec 3>>" << shell_quote(d + "/metrics.jsonl") << "\n"
    << "export ASSAY_METRICS_FD=3\n"
    // The command in its own process group, as the worker runs it locally;
    // the worker's SIGUSR1 (preempt) and SIGTERM reach that whole group.
    << "setsid /bin/sh -c " << shell_quote(s.command) << " &\n"
    << "child=$!\n"
       "trap 'kill -USR1 -- -$child' USR1\n"
       "trap 'kill -TERM -- -$child' TERM\n"
       "while :; do wait $child; st=$?; kill -0 $child 2>/dev/null || break; done\n"
       "exit $st\n";
  return o.str();
}

int exec_run(const RunJobSpec& spec, double poll_s) {
  auto say = [](const std::string& m) { std::cerr << "assay slurm exec: " << m << std::endl; };
  RunJobSpec s = spec;
  // GPUs: as many as the worker gave the run (its CUDA_VISIBLE_DEVICES names
  // the worker's own slots); the job gets its devices from SLURM.
  if (const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES"); cvd && *cvd && s.gpus == 0) {
    std::string list = cvd;
    s.gpus = 1 + static_cast<int>(std::count(list.begin(), list.end(), ','));
  }
  unsetenv("CUDA_VISIBLE_DEVICES");
  std::error_code ec;
  fs::create_directories(s.job_dir, ec);
  for (const char* f : {"metrics.jsonl", "job.out", "job.err"}) fs::remove(fs::path(s.job_dir) / f, ec);
  auto script = render_run_script(s);
  if (!script.ok()) {
    say(script.status().message());
    return 1;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGUSR1, on_signal);
  auto job = submit(*script);
  if (!job.ok()) {
    say(job.status().message());
    return 1;
  }
  say("job " + *job + " submitted (" + s.job_dir + ")");
  int metrics_fd = -1;
  if (const char* fd = std::getenv("ASSAY_METRICS_FD")) metrics_fd = std::atoi(fd);
  int64_t off_m = 0, off_o = 0, off_e = 0;
  const std::string dir = s.job_dir;
  auto relay = [&] {
    std::string m = read_new(dir + "/metrics.jsonl", &off_m, true);
    if (!m.empty() && metrics_fd >= 0) write_all(metrics_fd, m);
    write_all(1, read_new(dir + "/job.out", &off_o, false));
    write_all(2, read_new(dir + "/job.err", &off_e, false));
  };
  bool cancelled = false;
  while (true) {
    if (int sig = g_signal.exchange(0)) {
      if (sig == SIGUSR1) {
        // Preempt: the job script passes it on to the command's process group.
        (void)run({"scancel", "--signal=USR1", "--batch", *job});
        say("job " + *job + ": SIGUSR1 passed on (preempt)");
      } else if (!cancelled) {
        cancelled = true;
        (void)run({"scancel", *job});
        say("job " + *job + ": cancelled");
      }
    }
    relay();
    Cmd q = run({"squeue", "-h", "-j", *job, "-o", "%T"});
    const bool gone = q.code != 0 || q.out.find_first_not_of(" \n") == std::string::npos;
    if (gone) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000)));
  }
  // Shared filesystems show the last writes late; give them a moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  relay();
  std::string source;
  auto rec = job_record(*job, &source);
  if (!rec.ok()) {
    say(rec.status().message());
    return cancelled ? 143 : 1;
  }
  say("job " + *job + " ended " + rec->state + ", exit code " + rec->exit_code + " (" + source + ")");
  if (rec->state == "OUT_OF_MEMORY") std::cerr << "OutOfMemoryError: SLURM job " << *job << " ran out of memory\n";
  const int st = exit_status_of(rec->exit_code);
  if (rec->state != "COMPLETED" && st == 0) return cancelled ? 143 : 1;
  return st;
}

}  // namespace assay::slurm
