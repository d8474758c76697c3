#include "assay/jsonl.h"

#include <fstream>

#include "assay/json_limits.h"

namespace assay {

Status for_each_jsonl_object(
    const std::string& path, const std::string& what,
    const std::function<Status(const nlohmann::json& obj, const std::string& where)>& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": cannot open " + what);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    auto parsed = parse_json(line, where);
    if (!parsed.ok()) return Status::Corruption(parsed.status().message());
    const nlohmann::json& j = *parsed;
    if (!j.is_object()) return Status::Corruption(where + ": not a JSON object");
    ASSAY_RETURN_IF_ERROR(fn(j, where));
  }
  return Status::Ok();
}

}  // namespace assay
