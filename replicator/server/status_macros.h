// Early-return helpers for absl::Status / absl::StatusOr.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define REPLIFS_RETURN_IF_ERROR(expr)                                     \
  do {                                                                    \
    if (::absl::Status replifs_status_ = (expr); !replifs_status_.ok()) { \
      return replifs_status_;                                             \
    }                                                                     \
  } while (0)

#define REPLIFS_CONCAT_INNER_(a, b) a##b
#define REPLIFS_CONCAT_(a, b) REPLIFS_CONCAT_INNER_(a, b)

// REPLIFS_ASSIGN_OR_RETURN(auto x, Foo()); declares/assigns x or returns.
#define REPLIFS_ASSIGN_OR_RETURN(lhs, expr) \
  REPLIFS_ASSIGN_OR_RETURN_IMPL_(REPLIFS_CONCAT_(replifs_statusor_, __LINE__), lhs, expr)

#define REPLIFS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()
