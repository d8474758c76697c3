// assay worker: the daemon that runs leased runs on this machine's GPUs/CPUs.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "assay/worker.h"
#include "assay/worker_slurm.h"
#include "registry.h"

namespace {

namespace wk = assay::worker;

struct WorkerOpts {
  std::string coordinator;
  std::string token_file;
  std::string id;
  std::string gpus;
  int cpus = -1;
  int max_runs = 0;
  std::string labels;
  std::string work_dir = "assay-work";
  std::string spool_dir;
  std::string durability = "full";
  double kill_grace = 10;
  double lease_wait = 5;
  double preempt_grace = 30;
  int lease_ahead = -1;  // runs leased beyond free slots; -1: as many as --cpus
  double idle_exit = 0;
  std::string preempt_file;
  std::string executor = "local";
  std::vector<std::string> executor_args;
};

std::atomic<bool> g_stop{false};
std::atomic<bool> g_abort{false};
std::atomic<bool> g_preempt{false};

// SIGTERM (what SLURM sends before preempting or at a time limit): preempt;
// SIGINT: drain (finish running runs); a second signal of either: abandon.
void on_sigterm(int) {
  if (g_preempt.exchange(true) || g_stop) g_abort = true;
}
void on_sigint(int) {
  if (g_stop.exchange(true) || g_preempt) g_abort = true;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "worker";
  return buf;
}

int run(const WorkerOpts& o) {
  auto fail = [](const std::string& m) {
    std::cerr << "assay worker: " << m << "\n";
    return 1;
  };
  wk::WorkerConfig cfg;
  cfg.coordinator_url = o.coordinator;
  std::ifstream tf(o.token_file);
  if (!tf) return fail("--token-file " + o.token_file + ": cannot read");
  std::stringstream ss;
  ss << tf.rdbuf();
  for (char c : ss.str())
    if (!std::isspace(static_cast<unsigned char>(c))) cfg.token += c;
  if (cfg.token.empty()) return fail("--token-file " + o.token_file + ": the file is empty");
  cfg.host = host_name();
  // Inside a SLURM job: the id from the job, and no more GPUs/CPUs than it got.
  const auto env = wk::current_env();
  const bool slurm = wk::in_slurm_job(env);
  cfg.worker_id = !o.id.empty() ? o.id : slurm ? wk::slurm_worker_id(env) : cfg.host;
  if (!o.gpus.empty()) {
    auto g = wk::parse_gpu_override(o.gpus);
    if (!g.ok()) return fail(g.status().message());
    cfg.gpus = *g;
  } else {
    std::string note;
    cfg.gpus = wk::discover_gpus(&note);
    if (slurm) cfg.gpus = wk::slurm_allocated_gpus(cfg.gpus, env, &note);
    cfg.gpus_from_nvml = !cfg.gpus.empty();
    std::cerr << "assay worker: GPUs: " << note << "\n";
  }
  unsigned hw = std::thread::hardware_concurrency();
  const int job_cpus = slurm ? wk::slurm_allocated_cpus(env) : -1;
  cfg.cpus = o.cpus >= 0 ? o.cpus : job_cpus > 0 ? job_cpus : static_cast<int>(hw ? hw : 1);
  if (job_cpus > 0) cfg.cpus = std::min(cfg.cpus, job_cpus);
  cfg.idle_exit_s = o.idle_exit;
  if (o.executor == "slurm") {
    // Each run as its own SLURM job, through `assay slurm exec` (slurm/).
    char self[4096] = {0};
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cfg.command_prefix = "'" + std::string(n > 0 ? self : "assay") + "' slurm exec";
    for (const auto& a : o.executor_args) {
      if (a.find('\'') != std::string::npos) return fail("--executor-arg '" + a + "': no quotes");
      cfg.command_prefix += " '" + a + "'";
    }
    cfg.command_prefix += " --";
  } else if (!o.executor_args.empty()) {
    return fail("--executor-arg needs --executor slurm");
  }
  cfg.max_runs = o.max_runs;
  auto labels = wk::parse_labels(o.labels);
  if (!labels.ok()) return fail(labels.status().message());
  cfg.labels = *labels;
  cfg.work_dir = wk::expand_worker_dir(o.work_dir, cfg.worker_id);
  cfg.spool_dir = o.spool_dir;
  cfg.spool_full_sync = o.durability == "full";
  cfg.kill_grace = std::chrono::milliseconds(static_cast<int64_t>(o.kill_grace * 1000));
  cfg.lease_wait_s = o.lease_wait;
  cfg.preempt_grace = std::chrono::milliseconds(static_cast<int64_t>(o.preempt_grace * 1000));
  cfg.lease_ahead = o.lease_ahead;

  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = on_sigterm;
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // --preempt-file: its appearance preempts like SIGTERM (a SLURM job
  // script's way to reach the worker alone; a signal to the job step would
  // reach the runs too).
  std::atomic<bool> done{false};
  std::thread preempt_poll([&] {
    while (!o.preempt_file.empty() && !done && !g_preempt) {
      if (access(o.preempt_file.c_str(), F_OK) == 0) {
        std::cerr << "assay worker: " << o.preempt_file << " appeared: preempting\n";
        g_preempt = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  auto st = wk::run_worker(cfg, g_stop, g_abort, g_preempt, std::cerr);
  done = true;
  preempt_poll.join();
  if (!st.ok()) return fail(st.message());
  return 0;
}

void add_worker(CLI::App& app) {
  auto o = std::make_shared<WorkerOpts>();
  auto* w = app.add_subcommand(
      "worker", "Run leased runs on this machine: GPUs via NVML, metrics and logs to a coordinator");
  w->add_option("--coordinator", o->coordinator, "Coordinator URL, e.g. http://gpu-head:8470")
      ->required();
  w->add_option("--token-file", o->token_file,
                "File holding the worker token (worker.token from `assay coordinator init`)")
      ->required();
  w->add_option("--id", o->id, "Worker id, stable across restarts (default: the host name)");
  w->add_option("--gpus", o->gpus,
                "Override GPU discovery: a count (\"2\": 80 GB each) or INDEX:MEMORY list "
                "(\"0:80GB,1:24GB\"); \"0\" for none. Default: ask NVML (no driver: no GPUs)");
  w->add_option("--cpus", o->cpus, "CPU slots offered to runs (default: number of cores)")
      ->check(CLI::Range(0, 4096));
  w->add_option("--max-runs", o->max_runs, "Cap on concurrent runs (0: no cap beyond resources)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  w->add_option("--labels", o->labels, "Labels runs can require, e.g. zone=a,arch=hopper");
  w->add_option("--work-dir", o->work_dir,
                "Per-run directories (<dir>/runs/<run>.<attempt>/ with stdout.log, stderr.log, "
                "output/)")
      ->capture_default_str();
  w->add_option("--spool-dir", o->spool_dir,
                "Where undelivered reports wait while the coordinator is unreachable "
                "(default: <work-dir>/spool)");
  w->add_option("--durability", o->durability,
                "When a spooled report is durable: normal = it survives a crash of this worker "
                "(kill -9, OOM); full = also power loss and OS crashes of this node (fdatasync "
                "at every spool append and ack)")
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "normal"}));
  w->add_option("--kill-grace", o->kill_grace,
                "Seconds between SIGTERM and SIGKILL on cancel or timeout")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  w->add_option("--lease-wait", o->lease_wait, "Long-poll seconds of one lease request")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 25.0));
  w->add_option("--lease-ahead", o->lease_ahead,
                "Runs leased beyond the free CPU slots and held unstarted, so a slot never idles "
                "while a report and the next lease cross the network; handed back on drain or "
                "preemption (default: as many as --cpus; 0: none)")
      ->check(CLI::Range(0, 1024));
  w->add_option("--preempt-grace", o->preempt_grace,
                "Seconds runs get to checkpoint after SIGTERM before they are stopped and "
                "reported preempted")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  w->add_option("--preempt-file", o->preempt_file,
                "Preempt (as on SIGTERM) once this file exists; `assay slurm up` job scripts "
                "create it on SLURM's SIGTERM");
  w->add_option("--executor", o->executor,
                "Where runs run: local (here) or slurm (each run its own sbatch job via "
                "`assay slurm exec`, for a login node)")
      ->capture_default_str()
      ->check(CLI::IsMember({"local", "slurm"}));
  w->add_option("--executor-arg", o->executor_args,
                "Option for `assay slurm exec`, repeatable, e.g. --executor-arg=--partition=gpu");
  w->add_option("--idle-exit", o->idle_exit,
                "Drain and exit after this many seconds without a run (0: never), e.g. to "
                "release a SLURM allocation")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  w->footer(
      "\nInside a SLURM job the default --id is slurm-<job>-<node>-<procid>, GPUs are those of\n"
      "the allocation (SLURM_STEP_GPUS, SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES) and CPU slots at\n"
      "most SLURM_CPUS_PER_TASK; \"{id}\" in --work-dir becomes the worker id.\n"
      "\nEach run starts as its own process group via /bin/sh -c with CUDA_VISIBLE_DEVICES set to\n"
      "its GPUs (empty for CPU-only runs), ASSAY_RUN_ID, ASSAY_PARAMS (JSON), ASSAY_OUTPUT_DIR and\n"
      "ASSAY_METRICS_FD. A run reports by writing JSON lines to that descriptor:\n"
      "  {\"step\": 10, \"metrics\": {\"loss\": 1.23}}     {\"checkpoint\": \"ckpt/10\", \"step\": 10}\n"
      "Reports are spooled on disk while the coordinator is unreachable and resent in order.\n"
      "SIGTERM: preempt - lease nothing more, send each run SIGUSR1 and create its\n"
      "ASSAY_PREEMPT_FILE, wait up to --preempt-grace for it to checkpoint and exit, deliver, and\n"
      "report it preempted (it is requeued and resumes from its last checkpoint via\n"
      "ASSAY_RESUME_FROM). SIGINT: finish running runs and deliver, then exit. Twice: exit now.\n\n"
      "Examples:\n"
      "  assay worker --coordinator http://gpu-head:8470 --token-file ~/assay/worker.token\n"
      "  assay worker --coordinator http://127.0.0.1:8470 --token-file worker.token \\\n"
      "      --id cpu-box --gpus 0 --cpus 4 --labels zone=a");
  w->callback([o] { assay::cli::set_exit_code(run(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(61, add_worker);
