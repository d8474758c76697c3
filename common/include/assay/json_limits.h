// The one way Assay reads JSON text from outside the process: request bodies,
// spec files, metric lines, peer replies, config files.
//
// nlohmann's parser is iterative, but nearly everything done with the tree
// afterwards (dump, copy, compare, validate) recurses once per nesting level,
// so 100,000 '[' in a request ends in a stack overflow far from the parser.
// parse_json refuses such documents up front, and with them what the plain
// parser silently accepts or throws on:
//   - nesting deeper than max_depth arrays/objects (the root counts as 1);
//   - a key repeated within one object (later-wins would hide a typo);
//   - a number too large for a double (1e999: nlohmann throws out_of_range).
// Errors are Invalid and read "<what>: <where>: <problem>", e.g.
//   sweep.json: line 1 column 65: JSON nested deeper than the limit of 64 levels
//   request body: /labels: duplicate key "gpu"
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay {

// Deep enough for every document Assay defines (the deepest, a sweep's
// evals[].args, is about 6 levels) with room for user data in args/params.
inline constexpr int kMaxJsonDepth = 64;

// The byte offset of the first '[' or '{' (outside strings) that opens level
// max_depth + 1, or nullopt when the text never nests that deep. Linear, no
// allocation; does not validate the rest of the syntax.
std::optional<size_t> json_depth_exceeded_at(std::string_view text, int max_depth);

// Parses `text` as one JSON document (surrounding whitespace allowed).
// `what` names the source in errors: a file path, "request body",
// "metric line", "coordinator reply to POST /v1/worker/lease".
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what,
                                  int max_depth = kMaxJsonDepth);

// "line L column C" of a byte offset, for error messages (1-based).
std::string json_text_position(std::string_view text, size_t offset);

}  // namespace assay
