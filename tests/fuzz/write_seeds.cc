// Writes the fuzzer's seed corpus: scripts of valid requests, as the real
// client sends them (hello, missing chunks, uploads, commits of files,
// directories, links, renames and removes, listings, reads, versions).
// usage: write_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "replifs/v1/backup.pb.h"
#include "tests/fuzz/request_script.h"

namespace replifs::fuzz {
namespace {

constexpr char kJournalId[] = "0123456789abcdef";

Call Make(Method method, const google::protobuf::Message& request, uint8_t flags = 0) {
  Call call;
  call.method = method;
  call.flags = flags;
  call.request = request.SerializeAsString();
  return call;
}

Call Hello() {
  v1::HelloRequest request;
  request.set_journal_id(kJournalId);
  return Make(Method::kHello, request);
}

Call Upload(const std::vector<std::string>& contents) {
  Call call;
  call.method = Method::kUploadChunks;
  for (const std::string& data : contents) {
    v1::ChunkUpload upload;
    upload.set_data(data);  // id and length: fixed up by the runner
    call.uploads.push_back(upload.SerializeAsString());
  }
  return call;
}

// A one-byte id names the k-th chunk stored so far (request_script.h).
std::string KnownChunk(uint8_t k) { return std::string(1, static_cast<char>(k)); }

v1::Operation Put(uint64_t seq, const std::string& path, v1::NodeState::Type type,
                  const std::vector<uint8_t>& chunks = {}) {
  v1::Operation op;
  op.set_seq(seq);
  op.set_time_ns(1764072000000000000 + seq);
  v1::NodeState* state = op.mutable_put();
  state->set_path(path);
  state->set_type(type);
  state->set_mode(type == v1::NodeState::DIRECTORY ? 0755 : 0644);
  state->set_mtime_ns(1764072000000000000);
  for (uint8_t k : chunks) state->add_chunks()->set_id(KnownChunk(k));
  if (type == v1::NodeState::SYMLINK) state->set_symlink_target("../target");
  return op;
}

Call Apply(const std::vector<v1::Operation>& ops) {
  v1::ApplyRequest request;
  request.set_journal_id(kJournalId);
  for (const v1::Operation& op : ops) *request.add_operations() = op;
  return Make(Method::kApply, request);
}

Call Missing(const std::vector<uint8_t>& chunks) {
  v1::MissingChunksRequest request;
  for (uint8_t k : chunks) request.add_ids(KnownChunk(k));
  request.add_ids(std::string(16, '\x42'));  // one the server lacks
  return Make(Method::kMissingChunks, request);
}

Call Read(const std::vector<uint8_t>& chunks) {
  v1::ReadChunksRequest request;
  for (uint8_t k : chunks) request.add_ids(KnownChunk(k));
  return Make(Method::kReadChunks, request);
}

Call List(const std::vector<std::string>& paths, int64_t at_time_ns = 0) {
  v1::ListRequest request;
  request.set_at_time_ns(at_time_ns);
  for (const std::string& path : paths) request.add_paths(path);
  return Make(Method::kList, request);
}

Call Versions(const std::string& path) {
  v1::ListVersionsRequest request;
  request.set_path(path);
  return Make(Method::kListVersions, request);
}

v1::Operation Remove(uint64_t seq, const std::string& path) {
  v1::Operation op;
  op.set_seq(seq);
  op.set_remove(path);
  return op;
}

v1::Operation Rename(uint64_t seq, const std::string& from, const std::string& to) {
  v1::Operation op;
  op.set_seq(seq);
  op.mutable_rename()->set_from(from);
  op.mutable_rename()->set_to(to);
  return op;
}

std::vector<std::vector<Call>> Seeds() {
  const std::string a(3000, 'a');
  const std::string b = "hello, world\n";
  const std::string c(20000, 'c');
  std::vector<std::vector<Call>> seeds;
  seeds.push_back({Hello()});
  seeds.push_back({Upload({a, b})});
  seeds.push_back({Hello(), Missing({0, 1}), Upload({a, b, c}), Missing({0, 1, 2})});
  seeds.push_back(
      {Upload({a, b}),
       Apply({Put(1, "d", v1::NodeState::DIRECTORY), Put(2, "d/f", v1::NodeState::REGULAR, {0, 1}),
              Put(3, "d/l", v1::NodeState::SYMLINK), Put(4, "e", v1::NodeState::REGULAR)}),
       List({}), Read({0, 1}), Versions("d/f")});
  seeds.push_back(
      {Upload({b}),
       Apply({Put(10, "x", v1::NodeState::DIRECTORY), Put(11, "x/y", v1::NodeState::REGULAR, {0})}),
       Apply({Rename(12, "x", "z")}), List({"z"}), Apply({Remove(13, "z/y")}), Versions("z/y"),
       Versions("x/y")});
  seeds.push_back({Upload({c}), Apply({Put(20, "big", v1::NodeState::REGULAR, {0, 0, 0})}),
                   Read({0}), List({"big"}, 1764072000000000000)});
  seeds.push_back({Apply({Put(30, "fifo", v1::NodeState::FIFO)}), List({"fifo", "nothing"})});
  return seeds;
}

}  // namespace
}  // namespace replifs::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_seeds DIR\n");
    return 2;
  }
  const auto seeds = replifs::fuzz::Seeds();
  for (size_t i = 0; i < seeds.size(); ++i) {
    const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(i);
    std::ofstream out(path, std::ios::binary);
    out << replifs::fuzz::EncodeScript(seeds[i]);
    if (!out) {
      std::fprintf(stderr, "write_seeds: cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}
