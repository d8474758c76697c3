// Reading JSON Lines files: one JSON object per line, blank lines skipped.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay {

// Calls fn(object, where) for each non-blank line, where `where` is
// "<path>:<line>" for error messages. Stops at the first failure: a file that
// cannot be opened (IoError), a line that is not a JSON object (Corruption,
// naming the line), or the first non-ok Status fn returns. `what` names the
// file's role in the open error, e.g. "transcript".
Status for_each_jsonl_object(
    const std::string& path, const std::string& what,
    const std::function<Status(const nlohmann::json& obj, const std::string& where)>& fn);

}  // namespace assay
