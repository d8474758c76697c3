// The batch script of a worker job.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "assay/slurm.h"

namespace assay::slurm {

namespace {

// An option value SLURM reads from a "#SBATCH" line: no whitespace, no quotes
// (sbatch splits those lines itself; it does not run a shell on them).
Status plain(const char* flag, const std::string& v, bool required) {
  if (v.empty()) {
    if (required) return Status::Invalid(std::string(flag) + ": required, got nothing");
    return Status::Ok();
  }
  for (char c : v) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '\'' || c == '"' || c == '\\')
      return Status::Invalid(std::string(flag) + ": '" + v +
                             "' holds whitespace or a quote; expected a plain SLURM value");
  }
  return Status::Ok();
}

std::string fmt_seconds(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

double worker_preempt_grace(int grace_s) {
  // Delivering the reports of a run that stopped takes a few seconds; keep
  // 10 s of the grace for it (a quarter when the grace is short).
  if (grace_s >= 40) return grace_s - 10;
  return std::max(1.0, grace_s * 0.75);
}

Result<std::string> render_worker_script(const WorkerJobSpec& s) {
  ASSAY_RETURN_IF_ERROR(plain("--partition", s.partition, true));
  ASSAY_RETURN_IF_ERROR(plain("--time", s.time, true));
  ASSAY_RETURN_IF_ERROR(plain("--account", s.account, false));
  ASSAY_RETURN_IF_ERROR(plain("--qos", s.qos, false));
  ASSAY_RETURN_IF_ERROR(plain("--constraint", s.constraint, false));
  ASSAY_RETURN_IF_ERROR(plain("--tag", s.tag, true));
  if (s.coordinator.empty()) return Status::Invalid("--coordinator: required, got nothing");
  if (s.token_file.empty()) return Status::Invalid("--token-file: required, got nothing");
  if (s.work_dir.empty()) return Status::Invalid("--work-dir: required, got nothing");
  if (s.nodes < 1) return Status::Invalid("--nodes: expected >= 1, got " + std::to_string(s.nodes));
  if (s.gpus_per_node < 0)
    return Status::Invalid("--gpus-per-node: expected >= 0, got " + std::to_string(s.gpus_per_node));
  if (s.cpus_per_task < 1)
    return Status::Invalid("--cpus-per-task: expected >= 1, got " + std::to_string(s.cpus_per_task));
  if (s.grace_s < 1 || s.grace_s > 65535)
    return Status::Invalid("--grace: expected 1..65535 seconds, got " + std::to_string(s.grace_s));
  if (!(s.idle_exit_s >= 0) || std::isinf(s.idle_exit_s))
    return Status::Invalid("--idle-exit: expected seconds >= 0, got " + fmt_seconds(s.idle_exit_s));
  for (const auto& a : s.sbatch_args) {
    if (a.rfind("--", 0) != 0 || a.find('\n') != std::string::npos)
      return Status::Invalid("--sbatch-arg: '" + a + "': expected one long sbatch option (--name=value)");
  }

  const std::string log_dir = s.log_dir.empty() ? s.work_dir : s.log_dir;
  std::ostringstream o;
  o << "#!/bin/bash\n"
    << "#SBATCH --job-name=" << kJobNamePrefix << s.tag << "\n"
    << "#SBATCH --partition=" << s.partition << "\n"
    << "#SBATCH --nodes=" << s.nodes << "\n"
    << "#SBATCH --ntasks-per-node=1\n"
    << "#SBATCH --cpus-per-task=" << s.cpus_per_task << "\n";
  if (s.gpus_per_node > 0) o << "#SBATCH --gpus-per-node=" << s.gpus_per_node << "\n";
  o << "#SBATCH --time=" << s.time << "\n"
    // SIGTERM to this script `grace` s before the time limit; requeue when
    // SLURM preempts the job or its node fails.
    << "#SBATCH --signal=B:TERM@" << s.grace_s << "\n"
    << "#SBATCH --requeue\n"
    << "#SBATCH --open-mode=append\n"
    << "#SBATCH --output=" << log_dir << "/assay-worker-%j.out\n";
  if (!s.account.empty()) o << "#SBATCH --account=" << s.account << "\n";
  if (!s.qos.empty()) o << "#SBATCH --qos=" << s.qos << "\n";
  if (!s.constraint.empty()) o << "#SBATCH --constraint=" << s.constraint << "\n";
  for (const auto& a : s.sbatch_args) o << "#SBATCH " << a << "\n";
  o << "# An Assay worker job: one `assay worker` per node. The worker takes its\n"
       "# id from SLURM_JOB_ID, SLURMD_NODENAME and SLURM_PROCID and its GPUs from\n"
       "# the job's allocation.\n"
       "#\n"
       "# SLURM signals only this script (B:). Passing SIGTERM on through SLURM\n"
       "# would reach every process of the step, the runs too (and srun itself\n"
       "# ends the step at once on SIGTERM), so the script creates the preempt\n"
       "# file on the shared work dir instead; each worker watches it and\n"
       "# preempts: its runs checkpoint (SIGUSR1) and go back to the queue.\n"
    << "pf=" << shell_quote(s.work_dir) << "\"/preempt-$SLURM_JOB_ID\"\n"
    << "rm -f \"$pf\"  # a requeued job starts afresh\n"
       "trap 'touch \"$pf\"' TERM\n"
       "srun --ntasks-per-node=1 --kill-on-bad-exit=0 "
    << shell_quote(s.assay_exe) << " worker --coordinator " << shell_quote(s.coordinator)
    << " --token-file " << shell_quote(s.token_file) << " --work-dir "
    << shell_quote(s.work_dir + "/{id}") << " --cpus " << s.cpus_per_task
    << " --preempt-grace " << fmt_seconds(worker_preempt_grace(s.grace_s))
    << " --preempt-file \"$pf\"";
  if (s.idle_exit_s > 0) o << " --idle-exit " << fmt_seconds(s.idle_exit_s);
  o << " &\n"
       "pid=$!\n"
       "# The first wait returns when the trap runs; the second waits for the\n"
       "# workers to deliver and exit.\n"
       "wait $pid\n"
       "wait $pid\n";
  return o.str();
}

}  // namespace assay::slurm
