// Preemption counters, the resume flag and resumed attempts (migration 0006).
#include "assay/store.h"
#include "sqlite_util.h"

namespace assay::store {

Status Store::note_preempted(int64_t run_id) {
  ASSAY_CACHED(s, "UPDATE runs SET preemptions = preemptions + 1 WHERE id = ?1");
  return s.bind(1, run_id).exec().with_context("run " + std::to_string(run_id) + ": preemptions");
}

Result<int> Store::preemptions(int64_t run_id) {
  ASSAY_CACHED(q, "SELECT preemptions FROM runs WHERE id = ?1");
  q.bind(1, run_id);
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  if (!row) return Status::NotFound("run " + std::to_string(run_id) + ": no such run");
  return int(q.i64(0));
}

Status Store::set_resume(int64_t run_id, bool resume) {
  ASSAY_CACHED(s, "UPDATE runs SET resume = ?2 WHERE id = ?1");
  return s.bind(1, run_id).bind(2, int64_t(resume ? 1 : 0)).exec()
      .with_context("run " + std::to_string(run_id) + ": resume flag");
}

Result<std::optional<Artifact>> Store::resume_point(int64_t run_id) {
  ASSAY_CACHED(q, "SELECT a.id, a.run_id, a.kind, a.content_hash, a.path, a.step, a.parent_id, "
      "a.metadata_json, a.created_at FROM runs r JOIN artifacts a ON a.run_id = r.id "
      "WHERE r.id = ?1 AND r.resume = 1 AND a.kind = 'checkpoint' AND a.step IS NOT NULL "
      "ORDER BY a.step DESC, a.id DESC LIMIT 1");
  q.bind(1, run_id);
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  if (!row) return std::optional<Artifact>();
  return std::optional<Artifact>(Artifact{q.i64(0), q.opt_i64(1), q.text(2), q.text(3), q.text(4),
                                          q.opt_i64(5), q.opt_i64(6), q.text(7), q.f64(8)});
}

Status Store::put_resume(int64_t run_id, int attempt, int64_t step, const std::string& path) {
  return transaction([&]() -> Status {
    // A repeated `started` report keeps the first row (it said the same).
    ASSAY_CACHED(s, "INSERT OR IGNORE INTO run_resumes(run_id, attempt, step, checkpoint_path, at) "
        "VALUES (?1, ?2, ?3, ?4, ?5)");
    ASSAY_RETURN_IF_ERROR(s.bind(1, run_id).bind(2, int64_t(attempt)).bind(3, step).bind(4, path)
                              .bind(5, now()).exec()
                              .with_context("run " + std::to_string(run_id) +
                                            ": resume of attempt " + std::to_string(attempt)));
    if (sqlite3_changes(db_) == 0) return Status::Ok();
    // The attempt's curve now starts with the earlier attempts' points.
    return rebuild_prior_summary(run_id, attempt);
  });
}

}  // namespace assay::store
