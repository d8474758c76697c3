// Schema texts embedded at build time (see embed_schemas.cmake).
#pragma once

#include <map>
#include <string>

namespace assay::schemas {

// File name (e.g. "sweep.schema.json") -> JSON text.
const std::map<std::string, const char*>& embedded_schemas();

}  // namespace assay::schemas
