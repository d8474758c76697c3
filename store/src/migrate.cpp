#include <sqlite3.h>

#include <chrono>
#include <string>

#include "assay/store.h"
#include "migrations.h"
#include "sqlite_util.h"

namespace assay::store {
namespace {

constexpr const char* kLedger =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "  version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)";

double wall_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

Status check_sequence(const std::vector<Migration>& all) {
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i].version != int(i) + 1)
      return Status::Internal("migration " + std::string(all[i].name) + ": expected version " +
                              std::to_string(i + 1) + ", got " + std::to_string(all[i].version));
  return Status::Ok();
}

// PRAGMA foreign_key_check after a migration: any row whose parent is gone
// fails it, naming the first such row (table, rowid, parent table).
Status check_foreign_keys(sqlite3* db, const Migration& m) {
  ASSAY_ASSIGN_OR_RETURN(auto q, sql::Stmt::prepare(db, "PRAGMA foreign_key_check"));
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  if (!row) return Status::Ok();
  return Status::Internal("migration " + std::string(m.name) +
                          ": foreign key check failed: table " + q.text(0) + " rowid " +
                          std::to_string(q.i64(1)) + " refers to a missing row of " + q.text(2) +
                          "; expected no violations, rolled back");
}

Status apply_one(sqlite3* db, const Migration& m, double now_s) {
  ASSAY_RETURN_IF_ERROR(sql::exec(db, "BEGIN IMMEDIATE"));
  Status st = sql::exec(db, m.sql).with_context(std::string("migration ") + m.name);
  if (st.ok()) st = check_foreign_keys(db, m);
  if (st.ok()) {
    auto ins = sql::Stmt::prepare(
        db, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)");
    st = ins.ok() ? ins->bind(1, m.version).bind(2, m.name).bind(3, now_s).exec() : ins.status();
  }
  if (st.ok()) st = sql::exec(db, "PRAGMA user_version = " + std::to_string(m.version));
  if (st.ok()) st = sql::exec(db, "COMMIT");
  if (!st.ok()) {
    (void)sql::exec(db, "ROLLBACK");
    return st;
  }
  return Status::Ok();
}

}  // namespace

Result<int> current_version(sqlite3* db) {
  ASSAY_ASSIGN_OR_RETURN(auto probe, sql::Stmt::prepare(
      db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'"));
  ASSAY_ASSIGN_OR_RETURN(bool row, probe.step());
  if (!row || probe.i64(0) == 0) return 0;
  ASSAY_ASSIGN_OR_RETURN(auto q, sql::Stmt::prepare(
      db, "SELECT coalesce(max(version), 0) FROM schema_migrations"));
  ASSAY_ASSIGN_OR_RETURN(row, q.step());
  return row ? int(q.i64(0)) : 0;
}

Result<int> apply_migrations(sqlite3* db, const std::vector<Migration>& all, int target,
                             double now_s) {
  ASSAY_RETURN_IF_ERROR(check_sequence(all));
  const int newest = int(all.size());
  if (target < 0 || target > newest) target = newest;
  ASSAY_ASSIGN_OR_RETURN(int cur, current_version(db));
  if (cur > newest)
    return Status::VersionMismatch(
        std::string(sqlite3_db_filename(db, "main")) + ": database is at schema version " +
        std::to_string(cur) + ", written by a newer assay; this binary knows versions up to " +
        std::to_string(newest) + ". Upgrade assay to open it.");
  if (cur >= target) return cur;
  ASSAY_RETURN_IF_ERROR(sql::exec(db, kLedger));
  // Foreign keys off while migrating: a migration that rebuilds a table (the
  // only way to change a CHECK in SQLite) drops the old one, which with
  // foreign keys on deletes, or cascades to, every row that refers to it.
  // The pragma is a no-op inside a transaction, so it is set here, around
  // them; each migration checks the keys itself before it commits.
  bool fk_was_on = false;
  {
    ASSAY_ASSIGN_OR_RETURN(auto fk, sql::Stmt::prepare(db, "PRAGMA foreign_keys"));
    ASSAY_ASSIGN_OR_RETURN(bool fk_row, fk.step());
    fk_was_on = fk_row && fk.i64(0) != 0;
  }
  ASSAY_RETURN_IF_ERROR(sql::exec(db, "PRAGMA foreign_keys=OFF"));
  Status st = Status::Ok();
  for (const auto& m : all) {
    if (m.version <= cur || m.version > target) continue;
    st = apply_one(db, m, now_s);
    if (!st.ok()) break;
    cur = m.version;
  }
  if (fk_was_on) {
    Status on = sql::exec(db, "PRAGMA foreign_keys=ON");
    if (st.ok()) st = on;
  }
  if (!st.ok()) return st;
  return cur;
}

int latest_schema_version() { return int(embedded_migrations().size()); }

namespace {

Result<sqlite3*> open_raw(const std::string& path, bool create, bool readonly) {
  sqlite3* db = nullptr;
  int flags = readonly ? SQLITE_OPEN_READONLY
                       : (SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0));
  flags |= SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    Status s = sql::error(db, path + ": cannot open database");
    if (!create && !readonly) s = Status::NotFound(path + ": no such database (run `assay db init`)");
    sqlite3_close(db);
    return s;
  }
  return db;
}

}  // namespace

Result<int> migrate(const std::string& path, bool create) {
  ASSAY_ASSIGN_OR_RETURN(sqlite3 * db, open_raw(path, create, false));
  sqlite3_busy_timeout(db, 5000);
  Status st = sql::exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;");
  Result<int> r = st.ok() ? apply_migrations(db, embedded_migrations(), -1, wall_now())
                          : Result<int>(st);
  sqlite3_close(db);
  return r;
}

Result<int> schema_version_of(const std::string& path) {
  ASSAY_ASSIGN_OR_RETURN(sqlite3 * db, open_raw(path, false, true));
  auto v = current_version(db);
  sqlite3_close(db);
  if (!v.ok()) return v.status().with_context(path);
  return v;
}

}  // namespace assay::store
