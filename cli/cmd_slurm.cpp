// assay slurm up|status|down|autoscale: Assay workers as SLURM jobs.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <filesystem>
#include <iostream>
#include <set>
#include <thread>

#include "assay/coord_client.h"
#include "assay/coordinator.h"
#include "assay/slurm.h"
#include "assay/slurm_autoscale.h"
#include "assay/slurm_exec.h"
#include "registry.h"

namespace {

namespace sl = assay::slurm;
namespace fs = std::filesystem;
using Json = nlohmann::json;

int fail(const std::string& cmd, const std::string& msg) {
  std::cerr << "assay slurm " << cmd << ": " << msg << "\n";
  return 1;
}

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "assay" : p.string();
}

std::string absolute(const std::string& p) {
  std::error_code ec;
  auto a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// Options of a worker job shared by up and autoscale.
void add_job_flags(CLI::App* s, std::shared_ptr<sl::WorkerJobSpec> o) {
  s->add_option("--coordinator", o->coordinator, "Coordinator URL the workers connect to")
      ->required();
  s->add_option("--token-file", o->token_file,
                "Worker token file, readable on the nodes (the token never goes on a command line)")
      ->required();
  s->add_option("--partition,-p", o->partition, "SLURM partition")->required();
  s->add_option("--nodes,-N", o->nodes, "Nodes per job (one worker each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  s->add_option("--gpus-per-node", o->gpus_per_node, "GPUs per node (sbatch --gpus-per-node)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  s->add_option("--cpus-per-task", o->cpus_per_task, "CPUs per worker: its CPU slots for runs")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  s->add_option("--time,-t", o->time, "Job time limit (sbatch --time), e.g. 04:00:00")->required();
  s->add_option("--account,-A", o->account, "sbatch --account");
  s->add_option("--qos", o->qos, "sbatch --qos");
  s->add_option("--constraint,-C", o->constraint, "sbatch --constraint");
  s->add_option("--sbatch-arg", o->sbatch_args,
                "Extra sbatch option for the script, repeatable, e.g. --sbatch-arg=--mem=64G");
  s->add_option("--grace", o->grace_s,
                "Seconds before the time limit (or after a preemption signal) the workers get to "
                "checkpoint their runs and hand them back")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  s->add_option("--idle-exit", o->idle_exit_s,
                "A worker without runs for this many seconds exits, releasing the allocation "
                "(0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  s->add_option("--work-dir", o->work_dir,
                "Shared directory for the workers (each uses <dir>/<worker id>); checkpoints "
                "written there let a run resume on another node")
      ->required();
  s->add_option("--log-dir", o->log_dir, "Where job output files go (default: --work-dir)");
  s->add_option("--tag", o->tag, "Names the jobs assay-worker:<tag> (status/down filter on it)")
      ->capture_default_str();
  s->add_option("--assay", o->assay_exe, "The assay binary on the nodes (default: this one)");
}

void finish_spec(sl::WorkerJobSpec* o) {
  if (o->assay_exe.empty()) o->assay_exe = self_exe();
  o->token_file = absolute(o->token_file);
  o->work_dir = absolute(o->work_dir);
  if (!o->log_dir.empty()) o->log_dir = absolute(o->log_dir);
}

void print_rows(const std::vector<std::string>& head,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
  for (auto& r : rows)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string l;
    for (size_t i = 0; i < r.size(); ++i)
      l += r[i] + (i + 1 < r.size() ? std::string(w[i] - r[i].size() + 2, ' ') : "");
    std::cout << l << "\n";
  };
  line(head);
  for (auto& r : rows) line(r);
}

int do_up(sl::WorkerJobSpec o, int jobs) {
  finish_spec(&o);
  if (access(o.token_file.c_str(), R_OK) != 0)
    return fail("up", "--token-file " + o.token_file + ": cannot read");
  std::error_code ec;
  fs::create_directories(o.work_dir, ec);
  if (!o.log_dir.empty()) fs::create_directories(o.log_dir, ec);
  auto script = sl::render_worker_script(o);
  if (!script.ok()) return fail("up", script.status().message());
  for (int i = 0; i < jobs; ++i) {
    auto id = sl::submit(*script);
    if (!id.ok()) return fail("up", id.status().message());
    std::cout << *id << "\n";
  }
  return 0;
}

int do_status(const std::string& tag, bool json) {
  auto jobs = sl::list_worker_jobs(tag);
  if (!jobs.ok()) return fail("status", jobs.status().message());
  if (json) {
    Json out = Json::array();
    for (auto& j : *jobs)
      out.push_back({{"job_id", j.id}, {"tag", j.tag()}, {"state", j.state}, {"reason", j.reason},
                     {"nodes", j.nodes}, {"cpus", j.cpus}, {"gres", j.gres},
                     {"time_used", j.time_used}, {"time_limit", j.time_limit},
                     {"node_list", j.node_list}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (auto& j : *jobs)
    rows.push_back({j.id, j.tag(), j.state, j.state == "PENDING" ? j.reason : j.node_list,
                    std::to_string(j.nodes), j.time_used, j.time_limit});
  print_rows({"job", "tag", "state", "nodes/reason", "nodes", "time", "limit"}, rows);
  return 0;
}

int do_down(const std::string& tag) {
  auto jobs = sl::list_worker_jobs(tag);
  if (!jobs.ok()) return fail("down", jobs.status().message());
  std::vector<std::string> ids;
  for (auto& j : *jobs) ids.push_back(j.id);
  auto st = sl::cancel(ids);
  if (!st.ok()) return fail("down", st.message());
  std::cout << "cancelled " << ids.size() << " worker job(s)"
            << (ids.empty() ? "" : ":") ;
  for (auto& i : ids) std::cout << " " << i;
  std::cout << "\n";
  return 0;
}

// Tells the coordinator how an ended worker job ended (POST /v1/slurm/jobs/{job}),
// when that is something its runs should know (triage_reason).
assay::Status report_job(assay::http::Client& http, const std::string& job) {
  std::string source;
  ASSAY_ASSIGN_OR_RETURN(auto rec, sl::job_record(job, &source));
  if (sl::triage_reason(rec.state).empty()) {
    std::cout << "slurm job " << job << ": " << rec.state << " (" << source
              << "), nothing to report\n" << std::flush;
    return assay::Status::Ok();
  }
  const Json body = {{"state", rec.state}, {"reason", rec.reason}, {"exit_code", rec.exit_code},
                     {"source", source}};
  ASSAY_ASSIGN_OR_RETURN(Json r, http.call("POST", "/v1/slurm/jobs/" + job, &body));
  std::cout << "slurm job " << job << ": " << rec.state << " (" << source << "); runs whose "
            << "lease it ended: " << r.value("lost", Json::array()).dump()
            << ", runs noted: " << r.value("noted", Json::array()).dump() << "\n" << std::flush;
  return assay::Status::Ok();
}

assay::Result<std::unique_ptr<assay::http::Client>> user_client(const std::string& url,
                                                                const std::string& token_file) {
  ASSAY_ASSIGN_OR_RETURN(auto token, assay::coordinator::read_token_file(token_file));
  ASSAY_ASSIGN_OR_RETURN(auto ep, assay::coordinator::parse_coordinator_url(url));
  return std::make_unique<assay::http::Client>(ep, token, 10.0);
}

std::atomic<bool> g_stop_autoscale{false};
void on_stop(int) { g_stop_autoscale = true; }

struct AutoOpts {
  std::string user_token_file;
  int max_jobs = 4;
  double interval = 5;
  bool once = false;
};

// One autoscaling pass; prints what it decided.
assay::Status autoscale_once(const sl::WorkerJobSpec& o, const AutoOpts& a,
                             assay::http::Client& http, const std::string& script,
                             std::set<std::string>* seen) {
  ASSAY_ASSIGN_OR_RETURN(Json runs, http.call("GET", "/v1/runs?state=queued&limit=10000"));
  ASSAY_ASSIGN_OR_RETURN(Json workers, http.call("GET", "/v1/workers"));
  ASSAY_ASSIGN_OR_RETURN(auto jobs, sl::list_worker_jobs(o.tag));
  // Jobs gone since the last pass: tell the coordinator how they ended.
  std::set<std::string> now;
  for (const auto& j : jobs) now.insert(j.id);
  for (const auto& id : *seen)
    if (!now.count(id)) {
      auto st = report_job(http, id);
      if (!st.ok()) std::cerr << "assay slurm autoscale: job " << id << ": " << st.message() << "\n";
    }
  *seen = now;
  const sl::Demand d = sl::unplaceable_runs(runs["runs"], workers["workers"]);
  std::set<std::string> registered;
  for (const auto& w : workers["workers"])
    if (w.value("alive", false)) registered.insert(sl::job_of_worker(w.value("id", "")));
  sl::ScaleInput in;
  in.unplaceable_runs = d.runs;
  in.gpus_per_run_max = d.max_gpus;
  in.max_jobs = a.max_jobs;
  in.runs_per_job = sl::runs_per_job(o.nodes, o.gpus_per_node, o.cpus_per_task, d);
  for (const auto& j : jobs) {
    if (j.state == "PENDING" || j.state == "CONFIGURING" || j.state == "REQUEUED") {
      ++in.pending_jobs;
    } else {
      ++in.running_jobs;
      if (!registered.count(j.id)) ++in.starting_workers;
    }
  }
  const int n = sl::jobs_to_submit(in);
  if (n > 0 || a.once)
    std::cout << "autoscale: " << d.runs << " queued run(s) without room, " << in.pending_jobs
              << " pending and " << in.running_jobs << " running job(s) (" << in.starting_workers
              << " not registered yet): submitting " << n << "\n"
              << std::flush;
  for (int i = 0; i < n; ++i) {
    ASSAY_ASSIGN_OR_RETURN(auto id, sl::submit(script));
    seen->insert(id);
    std::cout << "autoscale: submitted job " << id << "\n" << std::flush;
  }
  return assay::Status::Ok();
}

int do_autoscale(sl::WorkerJobSpec o, const AutoOpts& a) {
  finish_spec(&o);
  auto script = sl::render_worker_script(o);
  if (!script.ok()) return fail("autoscale", script.status().message());
  std::error_code ec;
  fs::create_directories(o.work_dir, ec);
  auto http = user_client(o.coordinator, a.user_token_file);
  if (!http.ok()) return fail("autoscale", http.status().message());
  signal(SIGTERM, on_stop);
  signal(SIGINT, on_stop);
  std::set<std::string> seen;
  while (!g_stop_autoscale) {
    auto st = autoscale_once(o, a, **http, *script, &seen);
    if (!st.ok()) {
      std::cerr << "assay slurm autoscale: " << st.message() << " (trying again)\n";
      if (a.once) return 1;
    }
    if (a.once) return 0;
    for (double t = 0; t < a.interval && !g_stop_autoscale; t += 0.1)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return 0;
}

void add_slurm(CLI::App& app) {
  auto* s = app.add_subcommand("slurm", "Assay on SLURM: worker jobs (up, status, down, autoscale, report) and runs as jobs (exec)");
  s->require_subcommand(1);

  auto up = std::make_shared<sl::WorkerJobSpec>();
  auto jobs = std::make_shared<int>(1);
  auto* u = s->add_subcommand("up", "Submit worker jobs (sbatch): one `assay worker` per node");
  add_job_flags(u, up);
  u->add_option("--jobs", *jobs, "How many such jobs")->capture_default_str()->check(CLI::Range(1, 1000));
  u->footer(
      "\nThe job script runs `srun --ntasks-per-node=1 assay worker ...`, asks SLURM for\n"
      "SIGTERM --grace seconds before the time limit (--signal=B:TERM@GRACE) and for\n"
      "requeueing (--requeue). On SIGTERM each worker preempts: its runs checkpoint and\n"
      "go back to the queue, to resume elsewhere from that checkpoint. Prints the job ids.\n\n"
      "Example:\n"
      "  assay slurm up --coordinator http://head:8470 --token-file ~/.assay/worker.token \\\n"
      "      --partition gpu --nodes 2 --gpus-per-node 4 --cpus-per-task 32 --time 12:00:00 \\\n"
      "      --work-dir /shared/assay-work --idle-exit 600");
  u->callback([up, jobs] { assay::cli::set_exit_code(do_up(*up, *jobs)); });

  auto tag = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* st = s->add_subcommand("status", "List this user's Assay worker jobs (squeue)");
  st->add_option("--tag", *tag, "Only jobs of this tag (default: all)");
  st->add_flag("--json", *json, "Print JSON");
  st->callback([tag, json] { assay::cli::set_exit_code(do_status(*tag, *json)); });

  auto dtag = std::make_shared<std::string>();
  auto* dn = s->add_subcommand("down", "Cancel this user's Assay worker jobs (scancel)");
  dn->add_option("--tag", *dtag, "Only jobs of this tag (default: all)");
  dn->footer(
      "\nscancel ends the workers without a grace period: their runs are requeued when their\n"
      "leases expire. To hand runs back with a checkpoint first, send SIGTERM instead:\n"
      "  scancel --signal=TERM --batch JOBID");
  dn->callback([dtag] { assay::cli::set_exit_code(do_down(*dtag)); });

  auto as = std::make_shared<sl::WorkerJobSpec>();
  auto ao = std::make_shared<AutoOpts>();
  auto* a = s->add_subcommand(
      "autoscale", "Submit worker jobs while queued runs find no room on registered workers");
  add_job_flags(a, as);
  a->add_option("--user-token-file", ao->user_token_file,
                "User token file, to read the queue and the workers")
      ->required();
  a->add_option("--max-jobs", ao->max_jobs, "Cap on pending + running worker jobs of this tag")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  a->add_option("--interval", ao->interval, "Seconds between passes")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  a->add_flag("--once", ao->once, "One pass, then exit");
  a->footer(
      "\nEach pass places the queued runs first-fit on the alive workers' free GPUs and CPU\n"
      "slots; for what does not fit it submits jobs of the given shape, counting pending\n"
      "jobs and running jobs whose workers have not registered yet as capacity already on\n"
      "its way (so it does not submit again for the same runs), up to --max-jobs. Pair it\n"
      "with --idle-exit so that jobs end when the queue is empty.\n\n"
      "Example:\n"
      "  assay slurm autoscale --coordinator http://head:8470 --token-file worker.token \\\n"
      "      --user-token-file user.token --partition gpu --gpus-per-node 1 --time 4:00:00 \\\n"
      "      --work-dir /shared/assay-work --max-jobs 8 --idle-exit 300");
  a->callback([as, ao] { assay::cli::set_exit_code(do_autoscale(*as, *ao)); });

  struct ReportOpts {
    std::vector<std::string> jobs;
    std::string coordinator, user_token_file;
  };
  auto ro = std::make_shared<ReportOpts>();
  auto* rp = s->add_subcommand(
      "report", "Tell the coordinator how ended worker jobs ended (sacct, scontrol, jobcomp log)");
  rp->add_option("jobs", ro->jobs, "SLURM job ids")->required();
  rp->add_option("--coordinator", ro->coordinator, "Coordinator URL")->required();
  rp->add_option("--user-token-file", ro->user_token_file, "User token file")->required();
  rp->footer(
      "\nFor each job: its state from sacct (where accounting is configured), else scontrol\n"
      "(finished jobs stay there MinJobAge seconds), else the JobCompLoc file of\n"
      "JobCompType=jobcomp/filetxt. OUT_OF_MEMORY, TIMEOUT, NODE_FAIL, PREEMPTED, CANCELLED,\n"
      "FAILED, BOOT_FAIL and DEADLINE are posted to the coordinator: runs still held by the\n"
      "job's workers lose their lease at once with the state as the reason (requeued, or\n"
      "failed lost_worker naming it), runs already requeued get a slurm_job event.\n"
      "`assay slurm autoscale` does this by itself for the jobs it watches.\n\n"
      "Example:\n  assay slurm report 4242 --coordinator http://head:8470 --user-token-file user.token");
  auto ex = std::make_shared<sl::RunJobSpec>();
  auto* e = s->add_subcommand(
      "exec", "Run one command as its own SLURM job, relaying its metrics, logs and exit");
  e->add_option("--partition,-p", ex->partition, "SLURM partition");
  e->add_option("--time,-t", ex->time, "Job time limit");
  e->add_option("--account,-A", ex->account, "sbatch --account");
  e->add_option("--qos", ex->qos, "sbatch --qos");
  e->add_option("--constraint,-C", ex->constraint, "sbatch --constraint");
  e->add_option("--sbatch-arg", ex->sbatch_args, "Extra sbatch option, repeatable");
  e->add_option("--cpus-per-task", ex->cpus, "CPUs for the job")->capture_default_str();
  e->add_option("--gpus", ex->gpus,
                "GPUs for the job (default: as many as CUDA_VISIBLE_DEVICES names)");
  e->add_option("--job-dir", ex->job_dir,
                "Shared directory for the relay files (default: $ASSAY_OUTPUT_DIR/../slurm)");
  e->add_option("command", ex->command, "The command (one shell string)")->required();
  e->footer(
      "\nWhat `assay worker --executor slurm` starts for each run: the run's command runs in\n"
      "an sbatch job with the same ASSAY_* environment; its ASSAY_METRICS_FD writes to\n"
      "<job-dir>/metrics.jsonl on the shared filesystem, which this process relays to its\n"
      "own ASSAY_METRICS_FD, with job.out and job.err to its stdout and stderr. SIGUSR1\n"
      "(preempt) is passed to the job (scancel --signal=USR1 --batch); SIGTERM cancels it.\n"
      "It exits with the job's exit code (128 + signal when the job was killed).\n\n"
      "Example:\n  assay slurm exec --partition gpu --time 2:00:00 -- 'python train.py --lr 0.1'");
  e->callback([ex] {
    sl::RunJobSpec spec = *ex;
    if (spec.job_dir.empty()) {
      const char* out = std::getenv("ASSAY_OUTPUT_DIR");
      spec.job_dir = out ? (fs::path(out).parent_path() / "slurm").string() : absolute("assay-slurm-job");
    }
    if (const char* id = std::getenv("ASSAY_RUN_ID")) spec.name = std::string("assay-run:") + id;
    assay::cli::set_exit_code(sl::exec_run(spec));
  });

  rp->callback([ro] {
    auto http = user_client(ro->coordinator, ro->user_token_file);
    if (!http.ok()) return assay::cli::set_exit_code(fail("report", http.status().message()));
    int rc = 0;
    for (const auto& j : ro->jobs) {
      auto st = report_job(**http, j);
      if (!st.ok()) rc = fail("report", "job " + j + ": " + st.message());
    }
    assay::cli::set_exit_code(rc);
  });
}

}  // namespace

ASSAY_REGISTER_COMMAND(62, add_slurm);
