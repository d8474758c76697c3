// A JSON Schema (draft 2020-12) validator for the subset Assay's schemas use:
// type, properties, required, additionalProperties, propertyNames, enum,
// const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength,
// maxLength, pattern, items, minItems, maxItems, uniqueItems,
// minProperties, oneOf, and local $ref into #/$defs. An unsupported keyword
// in a schema is an error, so a schema can never be silently half-checked.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay::schemas {

struct ValidationError {
  std::string pointer;  // JSON pointer into the document, "" for the root
  std::string message;  // "expected a number > 0, got -1"
};

// Validates `doc` against `schema`. Returns every error found (empty = valid).
// The first error is the most specific one.
Result<std::vector<ValidationError>> validate(const nlohmann::json& schema,
                                              const nlohmann::json& doc);

// Validates against one of the embedded schemas ("sweep.schema.json", ...).
// Ok when valid; otherwise Invalid("<source>: <pointer>: <message>").
Status validate_embedded(std::string_view schema_name, const nlohmann::json& doc,
                         std::string_view source);

// The text of an embedded schema, for `assay schema NAME`.
Result<std::string> embedded_schema_text(std::string_view schema_name);

}  // namespace assay::schemas
