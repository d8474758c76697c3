#include "table.h"

#include <cstdio>

#include <nlohmann/json.hpp>

namespace assay::cli {

std::string cell_text(const store::Cell& c) {
  if (std::holds_alternative<std::monostate>(c)) return "NULL";
  if (auto* i = std::get_if<int64_t>(&c)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&c)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", *d);
    return buf;
  }
  return std::get<std::string>(c);
}

namespace {

// Display width in code points (good enough for aligned ASCII-ish output).
size_t width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool numeric(const store::Cell& c) {
  return std::holds_alternative<int64_t>(c) || std::holds_alternative<double>(c);
}

}  // namespace

void print_table(std::ostream& out, const store::QueryResult& r) {
  std::vector<size_t> w(r.columns.size());
  for (size_t i = 0; i < r.columns.size(); ++i) w[i] = width(r.columns[i]);
  std::vector<std::vector<std::string>> text;
  for (const auto& row : r.rows) {
    text.emplace_back();
    for (size_t i = 0; i < row.size(); ++i) {
      std::string t = cell_text(row[i]);
      for (auto& ch : t) if (ch == '\n' || ch == '\t') ch = ' ';
      w[i] = std::max(w[i], width(t));
      text.back().push_back(std::move(t));
    }
  }
  const size_t last = r.columns.empty() ? 0 : r.columns.size() - 1;
  // Right-align numbers; never pad the last column with trailing spaces.
  auto pad = [&](const std::string& s, size_t i, bool right) {
    std::string sp(w[i] - width(s), ' ');
    return right ? sp + s : (i == last ? s : s + sp);
  };
  for (size_t i = 0; i < r.columns.size(); ++i)
    out << (i ? "  " : "") << pad(r.columns[i], i, false);
  out << "\n";
  for (size_t i = 0; i < r.columns.size(); ++i) out << (i ? "  " : "") << std::string(w[i], '-');
  out << "\n";
  for (size_t k = 0; k < text.size(); ++k) {
    for (size_t i = 0; i < text[k].size(); ++i)
      out << (i ? "  " : "") << pad(text[k][i], i, numeric(r.rows[k][i]));
    out << "\n";
  }
  out << "(" << r.rows.size() << " row" << (r.rows.size() == 1 ? "" : "s") << ")\n";
}

void print_csv(std::ostream& out, const store::QueryResult& r) {
  auto field = [](const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) { if (c == '"') q += '"'; q += c; }
    return q + "\"";
  };
  for (size_t i = 0; i < r.columns.size(); ++i) out << (i ? "," : "") << field(r.columns[i]);
  out << "\r\n";
  for (const auto& row : r.rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (i) out << ",";
      if (auto* d = std::get_if<double>(&row[i])) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", *d);
        out << buf;
      } else if (!std::holds_alternative<std::monostate>(row[i])) {
        out << field(cell_text(row[i]));
      }
    }
    out << "\r\n";
  }
}

void print_json(std::ostream& out, const store::QueryResult& r) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& row : r.rows) {
    nlohmann::ordered_json obj;
    for (size_t i = 0; i < row.size(); ++i) {
      const auto& c = row[i];
      if (std::holds_alternative<std::monostate>(c)) obj[r.columns[i]] = nullptr;
      else if (auto* x = std::get_if<int64_t>(&c)) obj[r.columns[i]] = *x;
      else if (auto* d = std::get_if<double>(&c)) obj[r.columns[i]] = *d;
      else obj[r.columns[i]] = std::get<std::string>(c);
    }
    arr.push_back(std::move(obj));
  }
  out << arr.dump(2) << "\n";
}

}  // namespace assay::cli
