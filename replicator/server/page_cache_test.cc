// CachingPageStore: repeated reads of a page come from memory, HasPage and
// PutPage always reach the store, and the cache stays within its bytes.
#include "replicator/server/page_cache.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace replifs::server {
namespace {

// A store in memory that counts the calls reaching it.
class CountingPageStore : public PageStore {
 public:
  absl::StatusOr<bool> HasPage(int64_t repo_id, std::string_view id) override {
    ++has_calls;
    return pages.contains({repo_id, std::string(id)});
  }
  absl::Status PutPage(int64_t repo_id, std::string_view id, std::string_view data) override {
    ++put_calls;
    pages[{repo_id, std::string(id)}] = std::string(data);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> GetPage(int64_t repo_id, std::string_view id) override {
    ++get_calls;
    auto it = pages.find({repo_id, std::string(id)});
    if (it == pages.end()) return absl::NotFoundError("no page");
    return it->second;
  }
  std::map<std::pair<int64_t, std::string>, std::string> pages;
  int has_calls = 0, put_calls = 0, get_calls = 0;
};

TEST(CachingPageStore, RepeatedReadsComeFromMemory) {
  CountingPageStore store;
  store.pages[{1, "a"}] = std::string(100, 'a');
  CachingPageStore cache(&store, 1000);
  for (int i = 0; i < 3; ++i) {
    auto page = cache.GetPage(1, "a");
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(*page, std::string(100, 'a'));
  }
  EXPECT_EQ(store.get_calls, 1);
  EXPECT_EQ(cache.hits(), 2u);
  EXPECT_EQ(cache.misses(), 1u);
  // Repositories are separate namespaces.
  EXPECT_TRUE(absl::IsNotFound(cache.GetPage(2, "a").status()));
  EXPECT_EQ(store.get_calls, 2);
}

TEST(CachingPageStore, HasAndPutAlwaysReachTheStoreAndAPutPageIsCached) {
  CountingPageStore store;
  CachingPageStore cache(&store, 1000);
  ASSERT_TRUE(cache.PutPage(1, "p", "page bytes").ok());
  EXPECT_EQ(store.put_calls, 1);
  // A collector may delete it behind our back: HasPage asks the store.
  store.pages.clear();
  auto has = cache.HasPage(1, "p");
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
  EXPECT_EQ(store.has_calls, 1);
  // Reading it (for a version that still names it) is served from memory.
  auto page = cache.GetPage(1, "p");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(*page, "page bytes");
  EXPECT_EQ(store.get_calls, 0);
}

TEST(CachingPageStore, EvictsTheLeastRecentlyUsedBeyondItsBytes) {
  CountingPageStore store;
  for (const char* id : {"a", "b", "c"}) store.pages[{1, id}] = std::string(400, id[0]);
  CachingPageStore cache(&store, 1000);  // room for two pages
  ASSERT_TRUE(cache.GetPage(1, "a").ok());
  ASSERT_TRUE(cache.GetPage(1, "b").ok());
  ASSERT_TRUE(cache.GetPage(1, "a").ok());  // a is now the most recent
  ASSERT_TRUE(cache.GetPage(1, "c").ok());  // evicts b
  EXPECT_LE(cache.bytes(), 1000u);
  EXPECT_EQ(store.get_calls, 3);
  ASSERT_TRUE(cache.GetPage(1, "a").ok());
  EXPECT_EQ(store.get_calls, 3) << "a was used recently and must still be cached";
  ASSERT_TRUE(cache.GetPage(1, "b").ok());
  EXPECT_EQ(store.get_calls, 4) << "b was the least recently used and must have been evicted";
}

}  // namespace
}  // namespace replifs::server
