#include "replicator/journal/format.h"

#include "gtest/gtest.h"
#include "replicator/journal/crc32c.h"
#include "replicator/journal/segment_reader.h"

namespace replifs::journal {
namespace {

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  // Extending in two steps equals one pass.
  EXPECT_EQ(Crc32cExtend(Crc32c("1234"), "56789", 5), Crc32c("123456789"));
}

TEST(FormatTest, SegmentNames) {
  EXPECT_EQ(SegmentFileName(1), "00000000000000000001.log");
  EXPECT_EQ(ParseSegmentFileName("00000000000000004711.log"), 4711u);
  EXPECT_FALSE(ParseSegmentFileName("0000000000000004711.log"));
  EXPECT_FALSE(ParseSegmentFileName("00000000000000004711.log.corrupt"));
  EXPECT_FALSE(ParseSegmentFileName("0000000000000000471x.log"));
  EXPECT_FALSE(ParseSegmentFileName("99999999999999999999.log"));  // overflows u64
}

TEST(FormatTest, AckedRoundTripAndCorruption) {
  EXPECT_EQ(DecodeAcked(EncodeAcked(123456789012ull)), 123456789012ull);
  std::string bytes = EncodeAcked(7);
  bytes[0] ^= 1;
  EXPECT_FALSE(DecodeAcked(bytes));
  EXPECT_FALSE(DecodeAcked("short"));
}

TEST(FormatTest, ScanStopsAtBadSeqAndLength) {
  replifs::v1::ChangeEvent event;
  std::string segment = EncodeSegmentHeader();
  for (uint64_t seq = 5; seq <= 7; ++seq) {
    event.set_seq(seq);
    segment += EncodeRecord(seq, event.SerializeAsString());
  }
  SegmentScan scan = ScanSegment(segment, 5, {});
  EXPECT_TRUE(scan.clean);
  EXPECT_EQ(scan.records, 3u);
  EXPECT_EQ(scan.last_seq, 7u);

  // A well-formed record with the wrong seq (a gap) ends the intact prefix.
  event.set_seq(9);
  const std::string good_prefix = segment;
  segment += EncodeRecord(9, event.SerializeAsString());
  scan = ScanSegment(segment, 5, {});
  EXPECT_FALSE(scan.clean);
  EXPECT_EQ(scan.valid_end, good_prefix.size());

  // The name promises the first seq.
  EXPECT_EQ(ScanSegment(good_prefix, 4, {}).records, 0u);

  std::string bad_version = EncodeSegmentHeader();
  bad_version[8] = 2;
  EXPECT_EQ(CheckSegmentHeader(bad_version), SegmentHeaderState::kTorn) << "crc covers version";
}

}  // namespace
}  // namespace replifs::journal
