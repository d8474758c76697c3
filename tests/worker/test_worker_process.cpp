// Run supervision with real processes and signals.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "assay/worker_process.h"

namespace fs = std::filesystem;
using namespace assay::worker;
using namespace std::chrono_literals;

namespace {

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("assay-proc-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  LaunchSpec spec(const std::string& cmd) {
    LaunchSpec s;
    s.command = cmd;
    s.stdout_path = (dir_ / "stdout.log").string();
    s.stderr_path = (dir_ / "stderr.log").string();
    return s;
  }
  std::string slurp(const std::string& name) {
    std::ifstream in(dir_ / name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::vector<pid_t> pids_in(const std::string& name) {
    std::vector<pid_t> out;
    std::ifstream in(dir_ / name);
    pid_t p;
    while (in >> p) out.push_back(p);
    return out;
  }
  // Waits until `name` holds at least n pids (the run writes them as it starts).
  std::vector<pid_t> wait_pids(const std::string& name, size_t n) {
    for (int i = 0; i < 500; ++i) {
      auto p = pids_in(name);
      if (p.size() >= n) return p;
      std::this_thread::sleep_for(10ms);
    }
    return pids_in(name);
  }
  static bool alive(pid_t p) { return kill(p, 0) == 0; }

  fs::path dir_;
};

TEST_F(ProcessTest, RunsInItsOwnProcessGroupWithOnlyItsDescriptors) {
  // The shell lists its own descriptors (no pipeline: its pipe ends would show).
  auto s = spec("ls /proc/$$/fd");
  auto p = Process::spawn(s);
  ASSERT_TRUE(p.ok()) << p.status().message();
  pid_t pid = (*p)->pid();
  EXPECT_EQ(getpgid(pid), pid);
  EXPECT_NE(getpgid(pid), getpgid(0));
  EXPECT_EQ(getsid(pid), pid);
  ASSERT_TRUE((*p)->wait_finished(5s));
  ASSERT_TRUE((*p)->leader_status()->exited);
  EXPECT_EQ((*p)->leader_status()->code, 0);
  // stdin, stdout, stderr and the metrics pipe: nothing of the worker leaks.
  EXPECT_EQ(slurp("stdout.log"), "0\n1\n2\n3\n");
}

TEST_F(ProcessTest, SetsTheRunEnvironment) {
  RunEnv e;
  e.run_id = 42;
  e.params_json = R"({"lr":0.001,"name":"a b"})";
  e.output_dir = (dir_ / "out").string();
  e.gpu_indices = {0, 2};
  e.extra = {{"USER_VAR", "x"}, {"ASSAY_RUN_ID", "spoofed"}};
  auto s = spec(
      "printf '%s|%s|%s|%s|%s|%s\\n' \"$CUDA_VISIBLE_DEVICES\" \"$ASSAY_RUN_ID\" \"$ASSAY_PARAMS\" "
      "\"$ASSAY_OUTPUT_DIR\" \"$ASSAY_METRICS_FD\" \"$USER_VAR\"");
  s.env = run_environment(e);
  auto p = Process::spawn(s);
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_TRUE((*p)->wait_finished(5s));
  EXPECT_EQ(slurp("stdout.log"),
            "0,2|42|{\"lr\":0.001,\"name\":\"a b\"}|" + e.output_dir + "|3|x\n");
}

TEST_F(ProcessTest, CpuOnlyRunGetsEmptyCudaVisibleDevices) {
  RunEnv e;
  e.run_id = 7;
  auto s = spec("if [ -z \"${CUDA_VISIBLE_DEVICES+set}\" ]; then echo unset; "
                "else echo \"set:[$CUDA_VISIBLE_DEVICES]\"; fi");
  s.env = run_environment(e);
  auto p = Process::spawn(s);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->wait_finished(5s));
  EXPECT_EQ(slurp("stdout.log"), "set:[]\n");
}

TEST_F(ProcessTest, StderrGoesToItsOwnFile) {
  auto p = Process::spawn(spec("echo out; echo err >&2"));
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->wait_finished(5s));
  EXPECT_EQ(slurp("stdout.log"), "out\n");
  EXPECT_EQ(slurp("stderr.log"), "err\n");
}

TEST_F(ProcessTest, StopKillsChildrenAndGrandchildren) {
  // A leader with two background children, one of which has its own child
  // that ignores SIGTERM (so SIGKILL escalation is needed).
  std::string pids = (dir_ / "pids").string();
  auto s = spec("sleep 300 & echo $! >> " + pids +
                "; sh -c 'trap \"\" TERM; echo $$ >> " + pids +
                "; sleep 300 & echo $! >> " + pids + "; while :; do sleep 1; done' & "
                "echo $$ >> " + pids + "; wait");
  auto p = Process::spawn(s);
  ASSERT_TRUE(p.ok());
  auto before = wait_pids("pids", 4);
  ASSERT_EQ(before.size(), 4u);
  for (pid_t q : before) {
    EXPECT_TRUE(alive(q)) << q;
    EXPECT_EQ(getpgid(q), (*p)->pid()) << q;
  }
  (*p)->stop(300ms);
  ASSERT_TRUE((*p)->wait_finished(10s));
  EXPECT_TRUE((*p)->sigkill_sent()) << "the TERM-ignoring grandchild needed SIGKILL";
  for (pid_t q : before) EXPECT_FALSE(alive(q)) << "pid " << q << " survived the stop";
  ASSERT_TRUE((*p)->leader_status());
  EXPECT_FALSE((*p)->leader_status()->exited);
  EXPECT_EQ((*p)->leader_status()->signal, SIGTERM);
}

TEST_F(ProcessTest, ProcessesLeftBehindByTheLeaderAreStopped) {
  std::string pids = (dir_ / "pids").string();
  auto p = Process::spawn(spec("sleep 300 & echo $! > " + pids + "; exit 0"));
  ASSERT_TRUE(p.ok());
  auto left = wait_pids("pids", 1);
  ASSERT_EQ(left.size(), 1u);
  ASSERT_TRUE((*p)->wait_finished(8s));
  EXPECT_FALSE(alive(left[0]));
  EXPECT_TRUE((*p)->leader_status()->exited);
  EXPECT_EQ((*p)->leader_status()->code, 0);
}

TEST_F(ProcessTest, DestructorKillsALiveGroup) {
  std::string pids = (dir_ / "pids").string();
  pid_t child;
  {
    auto p = Process::spawn(spec("sleep 300 & echo $! > " + pids + "; wait"));
    ASSERT_TRUE(p.ok());
    auto v = wait_pids("pids", 1);
    ASSERT_EQ(v.size(), 1u);
    child = v[0];
  }
  EXPECT_FALSE(alive(child));
}

TEST_F(ProcessTest, SpawnErrorsNameTheStage) {
  auto s = spec("true");
  s.cwd = (dir_ / "no-such-dir").string();
  auto p = Process::spawn(s);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("chdir"), std::string::npos) << p.status().message();
  s = spec("true");
  s.stdout_path = (dir_ / "missing" / "x.log").string();
  p = Process::spawn(s);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("x.log"), std::string::npos);
}

// ---- exit classification with real processes ---------------------------------

Classification run_and_classify(ProcessTest* t, const LaunchSpec& s, bool timeout_after_200ms) {
  auto p = Process::spawn(s);
  EXPECT_TRUE(p.ok());
  if (!p.ok()) return {};
  ExitFacts f;
  if (timeout_after_200ms) {
    std::this_thread::sleep_for(200ms);
    f.timed_out = true;
    (*p)->stop(200ms);
  }
  EXPECT_TRUE((*p)->wait_finished(10s));
  f.status = (*p)->leader_status();
  f.we_sent_sigkill = (*p)->sigkill_sent();
  f.log_tail = read_tail(s.stdout_path, 4096) + read_tail(s.stderr_path, 4096);
  return classify_exit(f);
}

TEST_F(ProcessTest, ClassifiesExitCode) {
  auto c = run_and_classify(this, spec("exit 3"), false);
  EXPECT_EQ(c.outcome, Outcome::kExitCode);
  EXPECT_EQ(c.exit_code, 3);
  EXPECT_EQ(c.detail, "exit code 3");
}

TEST_F(ProcessTest, ClassifiesSuccess) {
  auto c = run_and_classify(this, spec("echo fine"), false);
  EXPECT_EQ(c.outcome, Outcome::kSucceeded);
}

TEST_F(ProcessTest, ClassifiesKillBySignal) {
  auto c = run_and_classify(this, spec("kill -SEGV $$"), false);
  EXPECT_EQ(c.outcome, Outcome::kSignal);
  EXPECT_EQ(c.signal, SIGSEGV);
  EXPECT_NE(c.detail.find("SIGSEGV"), std::string::npos) << c.detail;
}

TEST_F(ProcessTest, ClassifiesCudaOomText) {
  auto c = run_and_classify(
      this,
      spec("echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' >&2; exit 1"),
      false);
  EXPECT_EQ(c.outcome, Outcome::kOom);
  EXPECT_EQ(c.exit_code, 1);
}

TEST_F(ProcessTest, ClassifiesTimeout) {
  auto c = run_and_classify(this, spec("trap '' TERM; sleep 300"), true);
  EXPECT_EQ(c.outcome, Outcome::kTimeout);
  EXPECT_NE(c.detail.find("SIGKILL"), std::string::npos) << c.detail;
}

// ---- the classification table --------------------------------------------------

ExitFacts exited(int code) {
  ExitFacts f;
  f.status = ExitStatus{true, code, 0};
  return f;
}
ExitFacts signalled(int sig) {
  ExitFacts f;
  f.status = ExitStatus{false, 0, sig};
  return f;
}

TEST(ClassifyExit, PrecedenceAndOomEvidence) {
  auto f = signalled(SIGKILL);
  f.host_oom = true;
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kOom);
  f.we_sent_sigkill = true;  // our own escalation is not the OOM killer
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kSignal);
  f = exited(137);  // a shell reporting its SIGKILLed child
  f.host_oom = true;
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kOom);
  f = signalled(SIGKILL);
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kSignal);  // no evidence
  f = exited(0);
  f.log_tail = "CUDA error: out of memory";
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kSucceeded);  // zero exit wins over log text
  f = exited(1);
  f.log_tail = "RuntimeError: CUDA error: out of memory";
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kOom);
  f.timed_out = true;
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kTimeout);
  f.cancelled = true;
  EXPECT_EQ(classify_exit(f).outcome, Outcome::kCancelled);
  ExitFacts none;
  EXPECT_EQ(classify_exit(none).outcome, Outcome::kSpawnError);
  EXPECT_EQ(to_string(Outcome::kExitCode), "exit_code");
  EXPECT_EQ(to_string(Outcome::kOom), "oom");
}

TEST(ClassifyExit, OomTextPatterns) {
  EXPECT_TRUE(log_shows_oom("RuntimeError: CUDA out of memory. Tried to allocate"));
  EXPECT_TRUE(log_shows_oom("CUDA error: out of memory"));
  EXPECT_TRUE(log_shows_oom("torch.cuda.OutOfMemoryError: x"));
  EXPECT_FALSE(log_shows_oom("host out of memory? no: just a warning about cuda memory"));
}

TEST(OomEvidence, CounterIsReadableOnLinux) {
  auto n = oom_kill_count();
  if (!n) GTEST_SKIP() << "no cgroup v2 memory.events and no oom_kill in /proc/vmstat";
  EXPECT_GE(*n, 0);
}

}  // namespace
