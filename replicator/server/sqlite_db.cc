#include "replicator/server/sqlite_db.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/server/fault_injection.h"

namespace replifs::server {

absl::Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const std::string text = absl::StrCat("catalog: ", ToAbsl(what), ": ", message);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(text);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(text);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(text);
    default:
      return absl::InternalError(text);
  }
}

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

void SqliteStatement::BindInt(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }

void SqliteStatement::BindBlob(int index, std::string_view value) {
  // A zero-length blob must still be a BLOB (not NULL) so comparisons work.
  sqlite3_bind_blob64(stmt_, index, value.empty() ? "" : value.data(), value.size(),
                      SQLITE_TRANSIENT);
}

void SqliteStatement::BindText(int index, std::string_view value) {
  sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

absl::StatusOr<bool> SqliteStatement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, rc, "step");
}

absl::Status SqliteStatement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

void SqliteStatement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t SqliteStatement::ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string SqliteStatement::ColumnBlob(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) return std::string();
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

absl::StatusOr<SqliteDb> SqliteDb::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX,
      nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, absl::StrCat("open ", path));
    sqlite3_close(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  return SqliteDb(db);
}

SqliteDb& SqliteDb::operator=(SqliteDb&& other) noexcept {
  if (this != &other) {
    sqlite3_close(db_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

SqliteDb::~SqliteDb() { sqlite3_close(db_); }

absl::StatusOr<SqliteStatement> SqliteDb::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "prepare");
  return SqliteStatement(db_, stmt);
}

absl::Status SqliteDb::Exec(const char* sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
  sqlite3_free(error);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "exec");
  return absl::OkStatus();
}

SqliteTransaction::~SqliteTransaction() {
  if (open_) db_->Exec("ROLLBACK").IgnoreError();
}

absl::Status SqliteTransaction::Begin() {
  if (absl::Status status = db_->Exec("BEGIN IMMEDIATE"); !status.ok()) return status;
  open_ = true;
  return absl::OkStatus();
}

absl::Status SqliteTransaction::Commit() {
  if (fault_point_ != nullptr) {
    if (absl::Status status = fault::Check(fault_point_); !status.ok()) return status;
  }
  if (absl::Status status = db_->Exec("COMMIT"); !status.ok()) return status;
  open_ = false;
  return absl::OkStatus();
}

absl::Status MakeDurable(SqliteDb& db, const std::string& what) {
  if (absl::Status status = db.Exec("PRAGMA busy_timeout = 10000"); !status.ok()) return status;
  {
    absl::StatusOr<SqliteStatement> mode = db.Prepare("PRAGMA journal_mode = WAL");
    if (!mode.ok()) return mode.status();
    absl::StatusOr<bool> has_row = mode->Step();
    if (!has_row.ok()) return has_row.status();
    if (!*has_row || mode->ColumnBlob(0) != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(what, ": cannot switch the database to WAL mode"));
    }
  }
  return db.Exec("PRAGMA synchronous = FULL");
}

}  // namespace replifs::server
