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

struct ValidationReport {
  // The first errors found (at most 32), the most specific one first.
  std::vector<ValidationError> errors;
  size_t total = 0;  // every error found; 0 = valid
};

// Validates `doc` against `schema`, in time linear in the size of `doc`
// (uniqueItems is hashed), however many errors it has.
Result<ValidationReport> validate(const nlohmann::json& schema, const nlohmann::json& doc);

// Validates against one of the embedded schemas ("sweep.schema.json", ...).
// Ok when valid; otherwise Invalid("<source>: <pointer>: <message>").
Status validate_embedded(std::string_view schema_name, const nlohmann::json& doc,
                         std::string_view source);

// The text of an embedded schema, for `assay schema NAME`.
Result<std::string> embedded_schema_text(std::string_view schema_name);

}  // namespace assay::schemas
