#include "sqlite_util.h"

namespace assay::store::sql {

Status error(sqlite3* db, std::string_view what) {
  int code = db ? sqlite3_errcode(db) : SQLITE_ERROR;
  std::string msg = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "no connection");
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status::Unavailable(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return Status::Corruption(msg);
    case SQLITE_CONSTRAINT: return Status::Invalid(msg);
    case SQLITE_READONLY:
    case SQLITE_AUTH:
    case SQLITE_PERM: return Status::PermissionDenied(msg);
    default: return Status::IoError(msg);
  }
}

Result<Stmt> Stmt::prepare(sqlite3* db, std::string_view text) {
  Stmt s;
  s.db_ = db;
  if (sqlite3_prepare_v2(db, text.data(), int(text.size()), &s.s_, nullptr) != SQLITE_OK)
    return error(db, "prepare '" + std::string(text.substr(0, 60)) + "'");
  return s;
}

Result<bool> Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return error(db_, "step");
}

Status Stmt::exec() {
  while (true) {
    auto r = step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Ok();
  }
}

Status exec(sqlite3* db, std::string_view text) {
  char* err = nullptr;
  std::string t(text);
  if (sqlite3_exec(db, t.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = error(db, "exec");
    sqlite3_free(err);
    return s;
  }
  return Status::Ok();
}

}  // namespace assay::store::sql
