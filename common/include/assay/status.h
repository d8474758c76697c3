// Status and Result<T>: the error currency of every Assay component.
//
// Errors carry a code and a message that names the object, the field, the
// value found and what was expected, e.g.
//   "run 42: resources.gpus must be 1..8, got 0".
// Exceptions never cross a component's public header; a layer that calls a
// throwing library catches there and returns a Status.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace assay {

enum class Code {
  kOk = 0,
  kInvalidArgument,    // bad input from a user or a peer
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition, // the state forbids it (e.g. cancel a finished run)
  kPermissionDenied,
  kIoError,
  kCorruption,         // a file or database that does not parse or verify
  kVersionMismatch,    // e.g. a database stamped by a newer binary
  kUnavailable,        // a peer that may come back (network, busy)
  kInternal,
};

const char* code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status Invalid(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status VersionMismatch(std::string m) { return {Code::kVersionMismatch, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: <message>", or "ok".
  std::string to_string() const;
  // A copy whose message is "<prefix>: <message>"; ok stays ok.
  Status with_context(const std::string& prefix) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a value or a non-ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {       // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace assay

#define ASSAY_CONCAT_INNER(a, b) a##b
#define ASSAY_CONCAT(a, b) ASSAY_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` is not ok.
#define ASSAY_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::assay::Status assay_st_ = (expr);             \
    if (!assay_st_.ok()) return assay_st_;          \
  } while (0)

// `ASSAY_ASSIGN_OR_RETURN(auto x, f());` binds the value or returns the error.
#define ASSAY_ASSIGN_OR_RETURN(lhs, expr) \
  ASSAY_ASSIGN_OR_RETURN_IMPL(ASSAY_CONCAT(assay_r_, __LINE__), lhs, expr)
#define ASSAY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
