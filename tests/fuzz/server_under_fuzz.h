// A real BackupServer on 127.0.0.1 with a real store in a temp directory,
// and the calls of a fuzz script sent to it through the generated stub.
// Checks, besides "no crash": a chunk read back is the chunk stored, and
// Hello hands out the repository's one secret.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "replicator/server/backup_server.h"
#include "replifs/v1/backup.grpc.pb.h"
#include "tests/fuzz/request_script.h"

namespace replifs::fuzz {

inline constexpr char kFuzzRepo[] = "fuzz";

class ServerUnderFuzz {
 public:
  // Starts the server once per process: in $REPLIFS_FUZZ_DIR if set (the
  // caller cleans it), else in a fresh /tmp directory removed at exit.
  // Aborts with a message if it cannot.
  static ServerUnderFuzz& Get();

  void Run(const Call& call);

 private:
  ServerUnderFuzz() = default;
  void Start();
  void Prepare(grpc::ClientContext* context, uint8_t flags) const;
  // A one-byte id becomes the (byte % n)-th known chunk id.
  void FixId(std::string* id, uint8_t flags) const;
  void Remember(const std::string& id, const std::string& data);
  void CheckRead(const v1::ChunkData& chunk) const;

  std::string root_;
  std::string token_;
  std::string secret_;
  std::unique_ptr<server::BackupServer> server_;
  std::unique_ptr<v1::Backup::Stub> stub_;
  std::vector<std::string> known_ids_;             // oldest first, bounded
  std::map<std::string, std::string> known_data_;  // id -> content
};

}  // namespace replifs::fuzz
