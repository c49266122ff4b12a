#include "replicator/delta/chunk_list_delta.h"

#include <gtest/gtest.h>

#include <random>

namespace replifs::delta {
namespace {

v1::ChunkRef Ref(int n, uint32_t length = 65536) {
  v1::ChunkRef ref;
  std::string id(16, '\0');
  for (int i = 0; i < 4; ++i) id[i] = static_cast<char>(n >> (8 * i));
  id[15] = 'x';
  ref.set_id(id);
  ref.set_length(length);
  return ref;
}

ChunkList List(std::initializer_list<int> ns) {
  ChunkList list;
  for (int n : ns) *list.Add() = Ref(n);
  return list;
}

std::vector<std::pair<std::string, uint32_t>> Flat(const ChunkList& list) {
  std::vector<std::pair<std::string, uint32_t>> out;
  for (const v1::ChunkRef& ref : list) out.emplace_back(ref.id(), ref.length());
  return out;
}

void ExpectRoundTrip(const ChunkList& base, const ChunkList& target) {
  const v1::ChunkListDelta delta = MakeChunkListDelta(base, target);
  ChunkList out;
  ASSERT_TRUE(ApplyChunkListDelta(base, delta, "f", &out).ok());
  EXPECT_EQ(Flat(out), Flat(target));
}

TEST(ChunkListDelta, OneReplacedChunkOfABigListIsOneSmallSplice) {
  ChunkList base, target;
  for (int i = 0; i < 16384; ++i) *base.Add() = Ref(i);
  target = base;
  *target.Mutable(8000) = Ref(1 << 20);
  const v1::ChunkListDelta delta = MakeChunkListDelta(base, target);
  ASSERT_EQ(delta.splices_size(), 1);
  EXPECT_EQ(delta.splices(0).start(), 8000u);
  EXPECT_EQ(delta.splices(0).remove(), 1u);
  EXPECT_LT(delta.ByteSizeLong(), 100u);  // against ~25 B per chunk for the full list
  ExpectRoundTrip(base, target);
}

TEST(ChunkListDelta, InsertsRemovesAndTailsRoundTrip) {
  ExpectRoundTrip(List({1, 2, 3, 4}), List({1, 9, 2, 3, 4}));
  ExpectRoundTrip(List({1, 2, 3, 4}), List({1, 4}));
  ExpectRoundTrip(List({1, 2, 3, 4}), List({1, 2}));
  ExpectRoundTrip(List({1, 2, 3, 4}), List({1, 2, 3, 4, 5, 6}));
  ExpectRoundTrip(List({1, 2, 3, 4}), List({}));
  ExpectRoundTrip(List({}), List({7, 8}));
  ExpectRoundTrip(List({5, 5, 5, 5}), List({5, 6, 5, 5, 5}));  // repeated ids (zeros)
  ChunkList base = List({1, 2, 3});
  ChunkList target = List({1, 2, 3});
  target.Mutable(1)->set_length(100);  // same id, other length: not the same entry
  ExpectRoundTrip(base, target);
}

TEST(ChunkListDelta, AReplacementEqualToALaterEntryStaysOneSplice) {
  ChunkList base, target;
  for (int i = 0; i < 1000; ++i) *base.Add() = Ref(i);
  target = base;
  *target.Mutable(100) = Ref(900);  // e.g. a block of zeros that also occurs later
  const v1::ChunkListDelta delta = MakeChunkListDelta(base, target);
  EXPECT_EQ(delta.splices_size(), 1);
  ExpectRoundTrip(base, target);
  target = base;
  *target.Add() = Ref(0);
  target.SwapElements(0, 1000);  // inserted at the front, equal to base[0]
  target.SwapElements(1, 1000);
  ExpectRoundTrip(base, target);
}

TEST(ChunkListDelta, RandomEditsRoundTrip) {
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    ChunkList base, target;
    const int n = rng() % 50;
    for (int i = 0; i < n; ++i) *base.Add() = Ref(rng() % 20);
    for (const v1::ChunkRef& ref : base) {
      switch (rng() % 5) {
        case 0: break;                                    // dropped
        case 1: *target.Add() = Ref(100 + rng() % 20); break;  // replaced
        case 2: *target.Add() = ref; *target.Add() = Ref(rng() % 30); break;  // inserted after
        default: *target.Add() = ref;
      }
    }
    ExpectRoundTrip(base, target);
  }
}

TEST(ChunkListDelta, AnotherBaseIsRefusedAsFailedPrecondition) {
  const ChunkList base = List({1, 2, 3, 4});
  const v1::ChunkListDelta delta = MakeChunkListDelta(base, List({1, 2, 9, 4}));
  ChunkList out;
  // Same count and size, other content: only the digest tells.
  absl::Status status = ApplyChunkListDelta(List({1, 2, 3, 5}), delta, "f", &out);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_NE(status.message().find("chunk-list base of \"f\" does not match"), std::string::npos) << status;
  status = ApplyChunkListDelta(List({1, 2, 3}), delta, "f", &out);
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
}

TEST(ChunkListDelta, HostileSplicesAreRefused) {
  const ChunkList base = List({1, 2, 3, 4});
  v1::ChunkListDelta delta = MakeChunkListDelta(base, List({1, 9, 3, 4}));
  ChunkList out;
  v1::ChunkListDelta beyond = delta;
  beyond.mutable_splices(0)->set_remove(UINT64_MAX);  // start + remove overflows
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyChunkListDelta(base, beyond, "f", &out)));
  v1::ChunkListDelta backwards = delta;
  *backwards.add_splices() = delta.splices(0);  // overlaps the first
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyChunkListDelta(base, backwards, "f", &out)));
  v1::ChunkListDelta wrong_result = delta;
  *wrong_result.mutable_splices(0)->mutable_chunks(0) = Ref(10);
  absl::Status status = ApplyChunkListDelta(base, wrong_result, "f", &out);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_EQ(out.size(), 0);
}

TEST(ChunkListDelta, DigestSeesOrderAndLengths) {
  EXPECT_NE(ChunkListDigest(List({1, 2})), ChunkListDigest(List({2, 1})));
  ChunkList longer = List({1, 2});
  longer.Mutable(1)->set_length(1);
  EXPECT_NE(ChunkListDigest(List({1, 2})), ChunkListDigest(longer));
  EXPECT_EQ(ChunkListDigest(List({1, 2})).size(), 16u);
}

}  // namespace
}  // namespace replifs::delta
