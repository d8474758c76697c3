// Embedded migrations (generated from migrations/*.sql, see embed_migrations.cmake).
#pragma once

#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::store {

struct Migration {
  int version;        // the file's number: 1 for 0001_initial.sql
  const char* name;   // file name without .sql
  const char* sql;
};

// Sorted by version; versions are 1..N without gaps (checked at open).
const std::vector<Migration>& embedded_migrations();

}  // namespace assay::store

struct sqlite3;

namespace assay::store {

// Highest version recorded in schema_migrations (0 when the table is absent).
Result<int> current_version(sqlite3* db);

// Applies migrations with version in (current, target], each in its own
// transaction together with its row in schema_migrations. A failing
// migration rolls back and leaves the database at the previous version.
// A database beyond the newest known migration is refused.
Result<int> apply_migrations(sqlite3* db, const std::vector<Migration>& all, int target,
                             double now_s);

}  // namespace assay::store
