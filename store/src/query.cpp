// Read-only SQL for users: a read-only connection plus an authorizer.
//
// Two independent guards, so that neither string matching nor a single
// mechanism decides: the connection is opened SQLITE_OPEN_READONLY, and the
// authorizer denies every action code that is not a read. A statement
// followed by anything but whitespace or comments is refused before it runs.
#include <sqlite3.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>

#include "assay/store.h"
#include "sqlite_util.h"

namespace assay::store {
namespace {

// PRAGMAs that only read when given no argument.
bool read_only_pragma(const char* name, const char* arg) {
  static const char* kAllowed[] = {"table_info", "table_xinfo", "index_list", "index_info",
                                   "foreign_key_list", "user_version", "schema_version",
                                   "page_count", "page_size", "database_list", "function_list",
                                   "compile_options", "journal_mode", "data_version",
                                   "collation_list", "pragma_list", "table_list"};
  std::string n = name ? name : "";
  for (auto& c : n) c = char(std::tolower(static_cast<unsigned char>(c)));
  bool takes_object = n == "table_info" || n == "table_xinfo" || n == "index_list" ||
                      n == "index_info" || n == "foreign_key_list" || n == "table_list";
  for (const char* a : kAllowed)
    if (n == a) return arg == nullptr || takes_object;
  return false;
}

struct AuthState {
  std::string denied;  // the first refused action, for the error message
};

// Functions a read-only query must not call: fts3_tokenizer() hands out (and
// with two arguments takes) a raw pointer of this process; the others load
// code or read and write files when the build has them.
bool denied_function(const char* name) {
  static const char* kDenied[] = {"fts3_tokenizer", "load_extension", "readfile", "writefile",
                                  "edit", "fts5"};
  std::string n = name ? name : "";
  for (auto& c : n) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const char* d : kDenied)
    if (n == d) return true;
  return false;
}

int authorize(void* ud, int action, const char* a1, const char* a2, const char*, const char*) {
  auto* st = static_cast<AuthState*>(ud);
  switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
      return SQLITE_OK;
    case SQLITE_FUNCTION:  // a2: the function's name
      if (!denied_function(a2)) return SQLITE_OK;
      if (st->denied.empty()) st->denied = std::string("function ") + (a2 ? a2 : "") + "()";
      return SQLITE_DENY;
    case SQLITE_PRAGMA:
      if (read_only_pragma(a1, a2)) return SQLITE_OK;
      if (st->denied.empty())
        st->denied = std::string("PRAGMA ") + (a1 ? a1 : "") + (a2 ? std::string(" = ") + a2 : "");
      return SQLITE_DENY;
    default: {
      static const char* kNames[] = {
          "CREATE INDEX", "CREATE TABLE", "CREATE TEMP INDEX", "CREATE TEMP TABLE",
          "CREATE TEMP TRIGGER", "CREATE TEMP VIEW", "CREATE TRIGGER", "CREATE VIEW", "DELETE",
          "DROP INDEX", "DROP TABLE", "DROP TEMP INDEX", "DROP TEMP TABLE", "DROP TEMP TRIGGER",
          "DROP TEMP VIEW", "DROP TRIGGER", "DROP VIEW", "INSERT", "PRAGMA", "READ", "SELECT",
          "TRANSACTION", "UPDATE", "ATTACH", "DETACH", "ALTER TABLE", "REINDEX", "ANALYZE",
          "CREATE VTABLE", "DROP VTABLE", "FUNCTION", "SAVEPOINT", "RECURSIVE"};
      if (st->denied.empty())
        st->denied = (action >= 1 && action <= 33) ? kNames[action - 1]
                                                   : "action " + std::to_string(action);
      return SQLITE_DENY;
    }
  }
}

// True when the tail holds only whitespace and comments.
bool tail_is_empty(const char* p) {
  while (*p) {
    if (std::isspace(static_cast<unsigned char>(*p)) || *p == ';') {
      ++p;
    } else if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n') ++p;
    } else if (p[0] == '/' && p[1] == '*') {
      p += 2;
      while (*p && !(p[0] == '*' && p[1] == '/')) ++p;
      if (*p) p += 2;
    } else {
      return false;
    }
  }
  return true;
}

Cell read_cell(sqlite3_stmt* s, int c) {
  switch (sqlite3_column_type(s, c)) {
    case SQLITE_INTEGER: return int64_t(sqlite3_column_int64(s, c));
    case SQLITE_FLOAT: return sqlite3_column_double(s, c);
    case SQLITE_NULL: return std::monostate{};
    case SQLITE_BLOB: return "<blob " + std::to_string(sqlite3_column_bytes(s, c)) + " bytes>";
    default: {
      auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
      return std::string(t ? t : "", size_t(sqlite3_column_bytes(s, c)));
    }
  }
}

struct Conn {
  sqlite3* db = nullptr;
  ~Conn() { if (db) sqlite3_close(db); }
};

// Interrupts a statement past its deadline or cancelled from outside.
struct Budget {
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  const std::atomic<bool>* cancel = nullptr;
  bool timed_out = false, cancelled = false;
};

int on_progress(void* ud) {
  auto* b = static_cast<Budget*>(ud);
  if (b->cancel && b->cancel->load(std::memory_order_relaxed)) b->cancelled = true;
  else if (std::chrono::steady_clock::now() >= b->deadline) b->timed_out = true;
  return b->cancelled || b->timed_out ? 1 : 0;
}

// Largest string or blob a user query may build (randomblob(1e9) would
// otherwise allocate a gigabyte inside the serving process).
constexpr int kMaxValueBytes = 64 << 20;
// SQLite virtual-machine steps between two budget checks (~tens of µs).
constexpr int kProgressSteps = 1000;

// Locks the read connection down beyond SQLITE_OPEN_READONLY.
void harden(sqlite3* db) {
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, kMaxValueBytes);
}

std::string seconds_text(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

Status interrupted(const Budget& b, const QueryLimits& limits) {
  if (b.cancelled) return Status::Unavailable("query cancelled: the server is shutting down");
  return Status::Invalid("query stopped: it ran past the time budget of " +
                         seconds_text(limits.time_budget_s) + " s" +
                         (limits.budget_name.empty() ? "" : " (" + limits.budget_name + ")") +
                         "; narrow the query or raise the budget");
}

}  // namespace

Result<QueryResult> query_readonly(const std::string& db_path, const std::string& text,
                                   size_t max_rows) {
  QueryLimits l;
  l.max_rows = max_rows;
  return query_readonly(db_path, text, l);
}

Result<QueryResult> query_readonly(const std::string& db_path, const std::string& text,
                                   const QueryLimits& limits) {
  const size_t max_rows = limits.max_rows;
  Budget budget;
  budget.cancel = limits.cancel;
  if (limits.time_budget_s > 0)
    budget.deadline = std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                          std::chrono::duration<double>(limits.time_budget_s));
  Conn c;
  if (sqlite3_open_v2(db_path.c_str(), &c.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    return sql::error(c.db, db_path + ": cannot open database read-only");
  sqlite3_busy_timeout(c.db, 5000);
  harden(c.db);
  if (limits.time_budget_s > 0 || limits.cancel)
    sqlite3_progress_handler(c.db, kProgressSteps, on_progress, &budget);
  AuthState auth;
  sqlite3_set_authorizer(c.db, authorize, &auth);

  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v2(c.db, text.c_str(), int(text.size()), &raw, &tail);
  if (rc != SQLITE_OK) {
    if (!auth.denied.empty())
      return Status::PermissionDenied("query refused: " + auth.denied +
                                      " is not allowed; assay query is read-only");
    return Status::Invalid(std::string("query: ") + sqlite3_errmsg(c.db));
  }
  if (raw == nullptr) return Status::Invalid("query: empty statement");
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, &sqlite3_finalize);
  if (!tail_is_empty(tail))
    return Status::PermissionDenied(
        "query refused: more than one statement; assay query runs exactly one read-only statement");
  if (!sqlite3_stmt_readonly(raw))
    return Status::PermissionDenied("query refused: the statement would write; assay query is read-only");

  QueryResult out;
  const int ncol = sqlite3_column_count(raw);
  for (int i = 0; i < ncol; ++i) out.columns.push_back(sqlite3_column_name(raw, i));
  while (true) {
    rc = sqlite3_step(raw);
    if (rc == SQLITE_DONE) break;
    if (rc == SQLITE_INTERRUPT && (budget.timed_out || budget.cancelled))
      return interrupted(budget, limits);
    if (rc != SQLITE_ROW) return Status::Invalid(std::string("query: ") + sqlite3_errmsg(c.db));
    if (out.rows.size() >= max_rows) {
      out.truncated = true;
      break;
    }
    std::vector<Cell> row;
    row.reserve(size_t(ncol));
    for (int i = 0; i < ncol; ++i) row.push_back(read_cell(raw, i));
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace assay::store
