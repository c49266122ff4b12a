// Thin RAII wrappers over the SQLite C API that report errors as absl::Status.
// Not thread-safe: the owner serializes access (SqliteCatalog holds a mutex).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace replifs::server {

class SqliteStatement {
 public:
  SqliteStatement() = default;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement();

  // Parameters are 1-based, as in SQLite.
  void BindInt(int index, int64_t value);
  void BindBlob(int index, std::string_view value);  // copied
  void BindText(int index, std::string_view value);  // copied

  // Returns true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps a statement that returns no rows.
  absl::Status Run();
  // Makes the statement ready to be bound and stepped again.
  void Reset();

  int64_t ColumnInt(int column) const;
  std::string ColumnBlob(int column) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteDb {
 public:
  static absl::StatusOr<SqliteDb> Open(const std::string& path);
  SqliteDb(SqliteDb&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  SqliteDb& operator=(SqliteDb&& other) noexcept;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb();

  absl::StatusOr<SqliteStatement> Prepare(std::string_view sql);
  // Runs one or more statements that return no rows of interest.
  absl::Status Exec(const char* sql);

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

// Rolls back unless Commit() succeeded. BEGIN IMMEDIATE takes the write lock
// up front so a batch never fails half-way on a lock upgrade. A non-null
// `fault_point` (REPLIFS_FAULT) is checked just before COMMIT.
class SqliteTransaction {
 public:
  explicit SqliteTransaction(SqliteDb* db, const char* fault_point = nullptr)
      : db_(db), fault_point_(fault_point) {}
  ~SqliteTransaction();
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;
  absl::Status Begin();
  absl::Status Commit();

 private:
  SqliteDb* db_;
  const char* fault_point_;
  bool open_ = false;
};

// For databases whose commits must be durable before a reply: a busy
// timeout, WAL and synchronous=FULL. `what` names the database in errors.
absl::Status MakeDurable(SqliteDb& db, const std::string& what);

// Builds an absl::Status from the connection's last error.
absl::Status SqliteError(sqlite3* db, int rc, std::string_view what);

}  // namespace replifs::server
