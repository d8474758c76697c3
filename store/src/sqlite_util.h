// Thin RAII helpers over the SQLite C API, internal to the store.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "assay/status.h"

namespace assay::store::sql {

// A prepared statement; finalised on destruction.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_), owned_(o.owned_) { o.s_ = nullptr; }
  // An owned statement is finalised; a borrowed one (from a cache) is reset
  // and its bindings cleared, ready for the next user.
  ~Stmt() {
    if (!s_) return;
    if (owned_) {
      sqlite3_finalize(s_);
    } else {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
  }
  static Stmt borrow(sqlite3* db, sqlite3_stmt* s) {
    Stmt st;
    st.db_ = db;
    st.s_ = s;
    st.owned_ = false;
    return st;
  }

  static Result<Stmt> prepare(sqlite3* db, std::string_view text);

  Stmt& bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); return *this; }
  Stmt& bind(int i, int v) { sqlite3_bind_int64(s_, i, v); return *this; }
  Stmt& bind(int i, double v) { sqlite3_bind_double(s_, i, v); return *this; }
  Stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind_null(int i) { sqlite3_bind_null(s_, i); return *this; }
  template <class T>
  Stmt& bind(int i, const std::optional<T>& v) { return v ? bind(i, *v) : bind_null(i); }

  // SQLITE_ROW -> true, SQLITE_DONE -> false, anything else -> error.
  Result<bool> step();
  // Runs to completion, ignoring rows.
  Status exec();
  Status reset() { sqlite3_reset(s_); sqlite3_clear_bindings(s_); return Status::Ok(); }

  bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  std::string text(int c) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, size_t(sqlite3_column_bytes(s_, c))) : std::string();
  }
  std::optional<int64_t> opt_i64(int c) const {
    return is_null(c) ? std::nullopt : std::optional<int64_t>(i64(c));
  }
  std::optional<double> opt_f64(int c) const {
    return is_null(c) ? std::nullopt : std::optional<double>(f64(c));
  }
  std::optional<std::string> opt_text(int c) const {
    return is_null(c) ? std::nullopt : std::optional<std::string>(text(c));
  }
  sqlite3_stmt* raw() { return s_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
  bool owned_ = true;
};

// Executes one or more statements without results.
Status exec(sqlite3* db, std::string_view text);
// "<what>: <sqlite message>" as an IoError (or Corruption/Unavailable by code).
Status error(sqlite3* db, std::string_view what);

}  // namespace assay::store::sql

// Inside a Store member: `var`, a sql::Stmt borrowed from the connection's
// cache of prepared statements (reset when it goes out of scope).
#define ASSAY_CACHED(var, text)                                          \
  ASSAY_ASSIGN_OR_RETURN(sqlite3_stmt * var##_raw, cached_stmt(text)); \
  ::assay::store::sql::Stmt var = ::assay::store::sql::Stmt::borrow(db_, var##_raw)
