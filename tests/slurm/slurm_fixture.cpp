#include "slurm_fixture.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <random>
#include <sstream>
#include <thread>

namespace assay::slurmtest {

namespace {

using namespace std::chrono_literals;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// An executable on PATH or in the sbin directories (not always on a user's PATH).
std::string find_exe(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/local/sbin";
  std::stringstream ss(path);
  std::string d;
  while (std::getline(ss, d, ':')) {
    if (d.empty()) continue;
    fs::path p = fs::path(d) / name;
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// A TCP port nothing listens on right now (the kernel's pick for port 0).
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// The first of `names` found, or "".
std::string find_any(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (auto p = find_exe(n); !p.empty()) return p;
  return "";
}

std::string random_hex(int bytes) {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned>(rd() & 0xff));
    out += b;
  }
  return out;
}

// Polls pred every 100 ms for up to `limit`; its last answer.
template <typename Pred>
bool until(Pred pred, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(100ms);
  return pred();
}

// "KEY=VALUE" of `slurmd -C`'s first line.
std::string field(const std::string& line, const std::string& key) {
  std::stringstream ss(line);
  std::string tok;
  while (ss >> tok)
    if (tok.rfind(key + "=", 0) == 0) return tok.substr(key.size() + 1);
  return "";
}

}  // namespace

std::string SlurmCluster::env() const { return "SLURM_CONF=" + q(conf().string()) + " "; }

testing::CmdResult SlurmCluster::sh(const std::string& cmd) const {
  return testing::run_cmd(env() + "sh -c " + q(cmd));
}

std::string SlurmCluster::logs() const {
  std::string out;
  for (const char* f : {"munged.log", "slurmctld.log", "slurmd.log"})
    out += std::string("--- ") + f + "\n" + slurp(dir_ / f);
  if (accounting_)
    for (const char* f : {"mariadbd.log", "slurmdbd.log"})
      out += std::string("--- ") + f + "\n" + slurp(dir_ / f);
  return out;
}

bool SlurmCluster::wait_queue_empty(double seconds) const {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(seconds * 1000));
  while (std::chrono::steady_clock::now() < end) {
    auto r = sh("squeue -h -o %i");
    if (r.code == 0 && r.out.find_first_not_of(" \n") == std::string::npos) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

std::unique_ptr<SlurmCluster> SlurmCluster::start(const std::string& name, std::string* skip,
                                                  std::string* error) {
  return start(name, skip, error, Options{});
}

std::unique_ptr<SlurmCluster> SlurmCluster::start(const std::string& name, std::string* skip,
                                                  std::string* error, const Options& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const char* exe : {"munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel",
                          "scontrol"}) {
    if (find_exe(exe).empty()) {
      *skip = std::string(exe) + " not found on PATH or in /usr/sbin: install slurm-wlm and "
              "munge (scripts/install-deps)";
      return nullptr;
    }
  }
  std::unique_ptr<SlurmCluster> c(new SlurmCluster);
  if (opts.accounting) {
    for (auto names : {std::initializer_list<const char*>{"mariadbd", "mysqld"},
                       {"mariadb-install-db", "mysql_install_db"},
                       // mariadb-install-db runs it first (mariadb-client-core).
                       {"my_print_defaults"}, {"slurmdbd"}, {"sacct"}, {"sacctmgr"}}) {
      if (find_any(names).empty()) {
        c->accounting_skip_ = std::string(*names.begin()) +
                              " not found on PATH or in /usr/sbin: job accounting needs "
                              "slurmdbd, mariadb-server-core and mariadb-client-core "
                              "(scripts/install-deps)";
        break;
      }
    }
    c->accounting_ = c->accounting_skip_.empty();
  }
  if (geteuid() != 0) {
    if (testing::run_cmd("sudo -n true").code != 0) {
      *skip = "not root and `sudo -n true` fails: slurmd must run as root to start jobs";
      return nullptr;
    }
    c->sudo_ = "sudo -n ";
  }
  c->dir_ = fs::temp_directory_path() / ("assay-slurm-" + std::to_string(getpid()) + "-" + name);
  std::error_code ec;
  fs::remove_all(c->dir_, ec);
  fs::create_directories(c->dir_ / "state");
  fs::create_directories(c->dir_ / "spool");
  // munged refuses a socket directory others cannot traverse.
  fs::permissions(c->dir_, fs::perms(0755));
  c->jobcomp_ = (c->dir_ / "jobcomp.txt").string();

  // The watchdog first: a shell that blocks on a pipe from us and, at EOF
  // (our teardown, or our death), kills every marked process.
  int p[2];
  if (pipe(p) != 0) {
    *error = "pipe failed";
    return nullptr;
  }
  const std::string kill_script =
      "d=" + q(c->dir_.string()) + "; c=" + q(c->conf().string()) +
      "; for i in 1 2 3 4 5; do f=; for p in /proc/[0-9]*; do pid=${p#/proc/}; "
      "[ \"$pid\" = \"$$\" ] && continue; "
      "if tr '\\0' '\\n' < $p/environ 2>/dev/null | grep -qxF -e \"ASSAY_SLURM_FIXTURE=$d\" "
      "-e \"SLURM_CONF=$c\"; then kill -9 $pid 2>/dev/null; f=1; fi; done; "
      "[ -z \"$f\" ] && break; sleep 0.2; done";
  pid_t w = fork();
  if (w == 0) {
    dup2(p[0], 0);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    setsid();  // outlives us, and our terminal's signals
    std::string cmd = "read x; " + c->sudo_ + "sh -c " + q(kill_script);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(p[0]);
  fcntl(p[1], F_SETFD, FD_CLOEXEC);
  c->watchdog_ = w;
  c->watchdog_fd_ = p[1];

  if (!c->write_config(error)) return nullptr;
  const std::string d = c->dir_.string();
  if (!c->spawn("munged", {find_exe("munged"), "-F", "--force", "--socket=" + d + "/munge.sock",
                           "--key-file=" + d + "/munge.key", "--pid-file=" + d + "/munged.pid",
                           "--log-file=" + d + "/munged.log", "--seed-file=" + d + "/munged.seed"},
                error))
    return nullptr;
  // The database initialises while munged starts (slurmdbd needs both).
  if (c->accounting_ && !c->start_database(error)) return nullptr;
  if (!until([&] { return fs::exists(c->dir_ / "munge.sock"); }, 10s)) {
    *error = "munged did not create its socket in 10 s\n" + c->logs();
    return nullptr;
  }
  // slurmctld registers the cluster with slurmdbd as it starts: slurmdbd first.
  if (c->accounting_ && !c->start_slurmdbd(error)) return nullptr;
  const std::string cf = c->conf().string();
  if (!c->spawn("slurmctld", {find_exe("slurmctld"), "-D", "-f", cf}, error) ||
      !c->spawn("slurmd", {find_exe("slurmd"), "-D", "-f", cf}, error))
    return nullptr;
  bool idle = until(
      [&] {
        auto r = c->sh("sinfo -h -N -o %t -n " + c->node_ + " 2>/dev/null");
        return r.code == 0 && r.out.rfind("idle", 0) == 0;
      },
      30s);
  if (!idle) {
    *error = "the node did not become idle in 30 s: " + c->sh("sinfo -N").out + "\n" + c->logs();
    return nullptr;
  }
  if (c->accounting_ && !c->wait_accounting(error)) return nullptr;
  c->startup_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return c;
}

bool SlurmCluster::write_config(std::string* error) {
  const std::string d = dir_.string();
  {
    std::random_device rd;
    std::ofstream key(dir_ / "munge.key", std::ios::binary);
    for (int i = 0; i < 1024; ++i) key.put(static_cast<char>(rd()));
  }
  fs::permissions(dir_ / "munge.key", fs::perms(0400));
  if (!sudo_.empty() &&
      testing::run_cmd(sudo_ + "chown root:root " + q((dir_ / "munge.key").string())).code != 0) {
    *error = "sudo chown of the munge key failed";
    return false;
  }
  // This machine as slurmd sees it: "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105".
  auto hw = testing::run_cmd(find_exe("slurmd") + " -C");
  std::string line = hw.out.substr(0, hw.out.find('\n'));
  node_ = field(line, "NodeName");
  if (hw.code != 0 || node_.empty() || field(line, "CPUs").empty()) {
    *error = "slurmd -C: unexpected output: " + hw.out;
    return false;
  }
  std::ostringstream node;
  node << "NodeName=" << node_ << " NodeAddr=127.0.0.1";
  for (const char* k : {"CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
                        "RealMemory"})
    if (!field(line, k).empty()) node << " " << k << "=" << field(line, k);
  node << " State=UNKNOWN";
  if (accounting_ && !write_accounting_config(error)) return false;
  std::ofstream f(conf());
  f << "# A single-node test cluster (tests/slurm/slurm_fixture.cpp).\n"
    << "ClusterName=assaytest\n"
    << "SlurmctldHost=" << node_ << "(127.0.0.1)\n"
    << "SlurmctldPort=" << free_port() << "\n"
    << "SlurmdPort=" << free_port() << "\n"
    << "AuthType=auth/munge\nCredType=cred/munge\n"
    << "AuthInfo=socket=" << d << "/munge.sock\n"
    << "SlurmUser=root\nSlurmdUser=root\n"
    << "StateSaveLocation=" << d << "/state\n"
    << "SlurmdSpoolDir=" << d << "/spool\n"
    << "SlurmctldPidFile=" << d << "/slurmctld.pid\n"
    << "SlurmdPidFile=" << d << "/slurmd.pid\n"
    << "SlurmctldLogFile=" << d << "/slurmctld.log\n"
    << "SlurmdLogFile=" << d << "/slurmd.log\n"
    // No cgroups: processes are tracked by parentage, tasks are not bound.
    << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
    << "JobAcctGatherType=jobacct_gather/none\n"
    << "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
    << "JobCompType=jobcomp/filetxt\nJobCompLoc=" << jobcomp_ << "\n"
    << (accounting_ ? "AccountingStorageType=accounting_storage/slurmdbd\n"
                      "AccountingStorageHost=127.0.0.1\nAccountingStoragePort=" +
                          std::to_string(dbd_port_) +
                          // With slurmdbd this names the munge socket that
                          // authenticates to it (AuthInfo is not used there).
                          "\nAccountingStoragePass=" + d + "/munge.sock\n"
                    : "AccountingStorageType=accounting_storage/none\n")
    << "MpiDefault=none\nReturnToService=2\nSchedulerType=sched/backfill\n"
    // Finished jobs stay visible to scontrol for 5 min (triage reads them).
    << "MinJobAge=300\n"
    // Time limits: SIGTERM at the limit, SIGKILL 5 s later, no overtime.
    << "KillWait=5\nOverTimeLimit=0\nInactiveLimit=0\n"
    << "SlurmctldTimeout=30\nSlurmdTimeout=30\nMessageTimeout=10\n"
    << "PreemptType=preempt/partition_prio\nPreemptMode=REQUEUE\nJobRequeue=1\n"
    << node.str() << "\n"
    // Jobs share the cores (tests run several small worker jobs on 2 CPUs).
    << "PartitionName=" << partition_ << " Nodes=" << node_
    << " Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4\n";
  if (!f) {
    *error = "cannot write " + conf().string();
    return false;
  }
  return true;
}

namespace {

// A throwaway database: small, and no flushing at commit (its data dies
// with the test). Both mariadb-install-db and mariadbd take these.
const std::vector<std::string>& innodb_options() {
  static const std::vector<std::string> kOptions = {
      "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
      "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--skip-log-bin"};
  return kOptions;
}

}  // namespace

bool SlurmCluster::write_accounting_config(std::string* error) {
  const std::string d = dir_.string();
  db_port_ = free_port();
  do dbd_port_ = free_port();
  while (dbd_port_ == db_port_);
  const std::string pass = random_hex(16);
  // Run by mariadbd at each start, before it accepts connections.
  {
    std::ofstream init(dir_ / "init.sql");
    init << "CREATE DATABASE IF NOT EXISTS slurm_acct_db;\n"
         << "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '" << pass << "';\n"
         << "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n";
  }
  // slurmdbd reads slurmdbd.conf next to SLURM_CONF's slurm.conf, and only
  // when SlurmUser owns it and nobody else may read it (it holds the password).
  {
    std::ofstream f(dir_ / "slurmdbd.conf");
    f << "# slurmdbd of the test cluster (tests/slurm/slurm_fixture.cpp).\n"
      << "AuthType=auth/munge\nAuthInfo=socket=" << d << "/munge.sock\n"
      << "DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort=" << dbd_port_ << "\n"
      << "SlurmUser=root\n"
      << "PidFile=" << d << "/slurmdbd.pid\nLogFile=" << d << "/slurmdbd.log\n"
      << "StorageType=accounting_storage/mysql\n"
      << "StorageHost=127.0.0.1\nStoragePort=" << db_port_ << "\n"
      << "StorageUser=slurm\nStoragePass=" << pass << "\nStorageLoc=slurm_acct_db\n";
    if (!f) {
      *error = "cannot write " + (dir_ / "slurmdbd.conf").string();
      return false;
    }
  }
  for (const char* f : {"init.sql", "slurmdbd.conf"}) {
    fs::permissions(dir_ / f, fs::perms(0600));
    if (!sudo_.empty() &&
        testing::run_cmd(sudo_ + "chown root:root " + q((dir_ / f).string())).code != 0) {
      *error = std::string("sudo chown of ") + f + " failed";
      return false;
    }
  }
  return true;
}

bool SlurmCluster::start_database(std::string* error) {
  const std::string d = dir_.string();
  // mariadbd refuses to run as root unless told to (--user=root); the
  // marker lets the watchdog kill the bootstrap server too.
  std::string install = sudo_ + "/usr/bin/env ASSAY_SLURM_FIXTURE=" + q(d) + " " +
                        q(find_any({"mariadb-install-db", "mysql_install_db"})) +
                        " --no-defaults --datadir=" + q(d + "/db") +
                        " --user=root --auth-root-authentication-method=socket --skip-test-db"
                        " --skip-name-resolve";
  for (const auto& o : innodb_options()) install += " " + o;
  auto r = testing::run_cmd(install + " > " + q(d + "/mariadb-install.log"));
  if (r.code != 0) {
    *error = "mariadb-install-db failed (exit " + std::to_string(r.code) + "): " + r.out +
             slurp(dir_ / "mariadb-install.log");
    return false;
  }
  std::vector<std::string> argv = {find_any({"mariadbd", "mysqld"}),
                                   "--no-defaults",
                                   "--datadir=" + d + "/db",
                                   "--user=root",
                                   "--bind-address=127.0.0.1",
                                   "--port=" + std::to_string(db_port_),
                                   "--skip-name-resolve",
                                   "--socket=" + d + "/mariadbd.sock",
                                   "--pid-file=" + d + "/mariadbd.pid",
                                   "--log-error=" + d + "/mariadbd.log",
                                   "--init-file=" + d + "/init.sql"};
  argv.insert(argv.end(), innodb_options().begin(), innodb_options().end());
  return spawn("mariadbd", argv, error);
}

bool SlurmCluster::start_slurmdbd(std::string* error) {
  // mariadbd creates its socket file after its TCP socket, both before it
  // runs its init file; connections wait in the backlog until then.
  if (!until([&] { return fs::exists(dir_ / "mariadbd.sock"); }, 20s)) {
    *error = "mariadbd did not create " + (dir_ / "mariadbd.sock").string() + " in 20 s\n" +
             slurp(dir_ / "mariadbd.out") + logs();
    return false;
  }
  // No -f: slurmdbd finds slurmdbd.conf in SLURM_CONF's directory.
  if (!spawn("slurmdbd", {find_exe("slurmdbd"), "-D"}, error)) return false;
  // It listens once it has created its tables.
  if (!until([&] { return port_open(dbd_port_); }, 20s)) {
    *error = "slurmdbd did not listen on 127.0.0.1:" + std::to_string(dbd_port_) + " in 20 s\n" +
             slurp(dir_ / "slurmdbd.out") + logs();
    return false;
  }
  return true;
}

bool SlurmCluster::stop_slurmdbd(std::string* error) {
  std::ifstream in(dir_ / "slurmdbd.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) {
    *error = "no pid in " + (dir_ / "slurmdbd.pid").string();
    return false;
  }
  auto r = testing::run_cmd(sudo_ + "kill -9 " + std::to_string(pid));
  if (r.code != 0) {
    *error = "kill -9 " + std::to_string(pid) + " (slurmdbd): " + r.out;
    return false;
  }
  // Its listening socket closes with it.
  if (!until([&] { return !port_open(dbd_port_); }, 10s)) {
    *error = "slurmdbd still listens on " + std::to_string(dbd_port_) + " 10 s after SIGKILL";
    return false;
  }
  return true;
}

bool SlurmCluster::wait_accounting(std::string* error) {
  // slurmctld adds its cluster to the database as it registers with slurmdbd
  // (it did before the node was idle); sacctmgr answering with it shows that
  // clients reach slurmdbd too.
  auto registered = [&] {
    auto r = sh("sacctmgr -n -P list cluster format=Cluster 2>&1");
    return r.code == 0 && r.out.find("assaytest") != std::string::npos;
  };
  if (!until(registered, 20s)) {
    *error = "the cluster is not in slurmdbd's database after 20 s: " +
             sh("sacctmgr -n -P list cluster 2>&1").out + "\n" + logs();
    return false;
  }
  return true;
}

bool SlurmCluster::spawn(const std::string& name, const std::vector<std::string>& argv,
                         std::string* error) {
  std::vector<std::string> full;
  if (!sudo_.empty()) full = {"sudo", "-n"};
  full.push_back("/usr/bin/env");
  full.push_back("ASSAY_SLURM_FIXTURE=" + dir_.string());
  full.push_back("SLURM_CONF=" + conf().string());
  full.insert(full.end(), argv.begin(), argv.end());
  const std::string out = (dir_ / (name + ".out")).string();
  pid_t pid = fork();
  if (pid < 0) {
    *error = "fork failed for " + name;
    return false;
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (int i = 3; i < 1024; ++i) close(i);
    std::vector<char*> args;
    for (auto& a : full) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  daemons_.push_back(pid);
  return true;
}

void SlurmCluster::kill_marked() {
  // The watchdog does it at EOF on its pipe; we wait for it to finish.
  if (watchdog_fd_ >= 0) {
    close(watchdog_fd_);
    watchdog_fd_ = -1;
  }
  if (watchdog_ > 0) {
    waitpid(watchdog_, nullptr, 0);
    watchdog_ = -1;
  }
  for (pid_t d : daemons_) {
    kill(-d, SIGKILL);
    waitpid(d, nullptr, 0);
  }
  daemons_.clear();
}

SlurmCluster::~SlurmCluster() {
  kill_marked();
  if (std::getenv("ASSAY_KEEP_SLURM_DIR") == nullptr) {
    std::error_code ec;
    if (!sudo_.empty()) (void)testing::run_cmd(sudo_ + "rm -rf " + q(dir_.string()));
    fs::remove_all(dir_, ec);
  }
}

}  // namespace assay::slurmtest
