// SLURM's commands, run without a shell.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>

#include "assay/slurm.h"

namespace assay::slurm {

Cmd run(const std::vector<std::string>& argv, const std::string& input) {
  Cmd r;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    r.err = "pipe failed";
    return r;
  }
  pid_t pid = fork();
  if (pid < 0) {
    r.err = "fork failed";
    return r;
  }
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    dprintf(2, "%s: cannot run: not found on PATH\n", argv[0].c_str());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  // The input is a batch script (kilobytes): it fits the pipe buffer.
  signal(SIGPIPE, SIG_IGN);
  (void)!write(in[1], input.data(), input.size());
  close(in[1]);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* dst[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        dst[i]->append(buf, n);
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int st = 0;
  waitpid(pid, &st, 0);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

namespace {

std::string first_line(const std::string& s) {
  std::string l = s.substr(0, s.find('\n'));
  while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
  return l;
}

Status failed(const std::vector<std::string>& argv, const Cmd& c) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  return Status::Unavailable(cmd + ": exit " + std::to_string(c.code) + ": " +
                             first_line(c.err.empty() ? c.out : c.err));
}

}  // namespace

Result<std::string> submit(const std::string& script) {
  const std::vector<std::string> argv = {"sbatch", "--parsable"};
  Cmd c = run(argv, script);
  if (c.code != 0) return failed(argv, c);
  // --parsable: "<job id>[;<cluster>]".
  std::string id = first_line(c.out);
  id = id.substr(0, id.find(';'));
  if (id.empty() || id.find_first_not_of("0123456789_") != std::string::npos)
    return Status::Corruption("sbatch --parsable: expected a job id, got '" + c.out + "'");
  return id;
}

Result<std::vector<QueuedJob>> list_worker_jobs(const std::string& tag) {
  const std::vector<std::string> argv = {"squeue", "--me", "-h", "-o", kSqueueFormat};
  Cmd c = run(argv);
  if (c.code != 0) return failed(argv, c);
  ASSAY_ASSIGN_OR_RETURN(auto all, parse_squeue(c.out));
  std::vector<QueuedJob> mine;
  for (auto& j : all)
    if (j.is_worker_job() && (tag.empty() || j.tag() == tag)) mine.push_back(std::move(j));
  return mine;
}

Status cancel(const std::vector<std::string>& job_ids) {
  if (job_ids.empty()) return Status::Ok();
  std::vector<std::string> argv = {"scancel"};
  argv.insert(argv.end(), job_ids.begin(), job_ids.end());
  Cmd c = run(argv);
  if (c.code != 0) return failed(argv, c);
  return Status::Ok();
}

namespace {

// Whether a job has ended: COMPLETED, or a state that triage names (the one
// table of end states, parse.cpp). sacct, scontrol and the jobcomp log spell
// them alike; parse_sacct drops sacct's "by <uid>" after CANCELLED.
bool has_ended(const std::string& state) {
  return state == "COMPLETED" || !triage_reason(state).empty();
}

std::optional<JobRecord> from_sacct(const std::string& job_id) {
  // sacct answers only where slurmdbd keeps accounting.
  Cmd a = run({"sacct", "-n", "-P", "-X", "-j", job_id, "-o", kSacctFields});
  if (a.code != 0) return std::nullopt;
  for (auto& r : parse_sacct(a.out))
    if (r.id == job_id) return r;
  return std::nullopt;
}

std::optional<JobRecord> from_scontrol(const std::string& job_id) {
  Cmd s = run({"scontrol", "-o", "show", "job", job_id});
  if (s.code != 0) return std::nullopt;
  for (auto& r : parse_scontrol_jobs(s.out))
    if (r.id == job_id) return r;
  return std::nullopt;
}

// The jobcomp log named in `scontrol show config` (JobCompLoc): *loc is its
// path ("" when not set or not a file path).
std::optional<JobRecord> from_jobcomp(const std::string& job_id, std::string* loc) {
  Cmd conf = run({"scontrol", "show", "config"});
  loc->clear();
  std::istringstream in(conf.out);
  for (std::string l; std::getline(in, l);) {
    // "JobCompLoc              = /path"
    if (l.rfind("JobCompLoc", 0) == 0) {
      size_t eq = l.find('=');
      if (eq != std::string::npos) {
        *loc = l.substr(eq + 1);
        loc->erase(0, loc->find_first_not_of(' '));
      }
    }
  }
  if (loc->empty() || (*loc)[0] != '/') return std::nullopt;
  std::ifstream f(*loc);
  std::stringstream ss;
  ss << f.rdbuf();
  for (auto& r : parse_jobcomp(ss.str()))
    if (r.id == job_id) return r;
  return std::nullopt;
}

}  // namespace

Result<JobRecord> job_record(const std::string& job_id, std::string* source) {
  auto answer = [&](JobRecord r, const std::string& from) -> Result<JobRecord> {
    if (source) *source = from;
    return r;
  };
  // slurmctld sends a job's end to slurmdbd when it can: while slurmdbd is
  // behind (restarted, or slow), sacct still says RUNNING for a job that has
  // ended (seen: ~17 s after a slurmdbd restart, until slurmctld reconnects).
  // An end state from the controller or the jobcomp log wins over that.
  const auto acct = from_sacct(job_id);
  if (acct && has_ended(acct->state)) return answer(*acct, "sacct");
  if (auto ctl = from_scontrol(job_id)) return answer(*ctl, "scontrol");
  std::string loc;
  if (auto comp = from_jobcomp(job_id, &loc); comp && (!acct || has_ended(comp->state)))
    return answer(*comp, "jobcomp " + loc);
  if (acct) return answer(*acct, "sacct");
  return Status::NotFound("SLURM job " + job_id + ": not in sacct, scontrol or the jobcomp log (" +
                          (loc.empty() ? "JobCompLoc not set" : loc) + ")");
}

}  // namespace assay::slurm
