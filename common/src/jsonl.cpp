#include "assay/jsonl.h"

#include <fstream>

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
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Status::Corruption(where + ": not valid JSON");
    if (!j.is_object()) return Status::Corruption(where + ": not a JSON object");
    ASSAY_RETURN_IF_ERROR(fn(j, where));
  }
  return Status::Ok();
}

}  // namespace assay
