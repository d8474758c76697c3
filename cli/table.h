// Printing query results: aligned table, CSV, JSON.
#pragma once

#include <ostream>

#include "assay/store.h"

namespace assay::cli {

std::string cell_text(const store::Cell& c);
void print_table(std::ostream& out, const store::QueryResult& r);
void print_csv(std::ostream& out, const store::QueryResult& r);
void print_json(std::ostream& out, const store::QueryResult& r);

}  // namespace assay::cli
