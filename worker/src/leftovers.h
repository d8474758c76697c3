// Runs that outlive a worker killed with SIGKILL. Each run is started in its
// own session (setsid), and its direct child dies with the worker
// (PR_SET_PDEATHSIG), but a process it forked lives on, holding its GPUs.
// The worker records each live run's session id in the work directory and,
// when it starts again over the same directory, kills what is left of them.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>

namespace assay::worker {

// Session id of a live process from /proc/<pid>/stat; -1 when it is gone or a
// zombie.
pid_t session_of(pid_t pid);

// <work_dir>/sessions.log, a journal: "+<run>.<attempt> <sid>" when a run
// starts, "-<run>.<attempt>" when it is over, emptied whenever no run is
// live. (Older workers kept one file per run under <work_dir>/sessions/;
// those are read, and removed, too.)
void record_session(const std::string& work_dir, std::pair<int64_t, int> key, pid_t sid);
void forget_session(const std::string& work_dir, std::pair<int64_t, int> key);

// For every recorded session: SIGKILLs each process still in that session
// whose environment carries the run's ASSAY_RUN_ID (so a recycled session id
// never hits a stranger), then forgets the record. Returns the processes killed.
int kill_leftover_sessions(const std::string& work_dir,
                           const std::function<void(const std::string&)>& say);

}  // namespace assay::worker
