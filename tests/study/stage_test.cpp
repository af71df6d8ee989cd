#include "study/stage.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/error.h"

namespace seqit::study {
namespace {
using json = nlohmann::json;

TEST(StageStore, RunsOnceSkipsWhenDoneAndRedoesWhenTheKeyChanges) {
  seqit::testing::TempDir tmp;
  StageStore store(tmp.path());
  int calls = 0;
  auto work = [&](const std::filesystem::path& dir) {
    ++calls;
    seqit::testing::spit(dir / "out.txt", "x");
    return json{{"value", calls}};
  };
  json summary;
  const auto a = store.run("train-it-seed1", {{"lr", 0.01}, {"steps", 10}}, work, &summary);
  EXPECT_TRUE(a.done);
  EXPECT_EQ(summary["value"], 1);
  // Same key (in another key order): skipped, the summary read back.
  const auto b = store.run("train-it-seed1", {{"steps", 10}, {"lr", 0.01}}, work, &summary);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(a.dir, b.dir);
  EXPECT_EQ(summary["value"], 1);
  // A changed setting: a new folder, the old one kept.
  const auto c = store.run("train-it-seed1", {{"lr", 0.02}, {"steps", 10}}, work, &summary);
  EXPECT_EQ(calls, 2);
  EXPECT_NE(c.dir, a.dir);
  EXPECT_TRUE(std::filesystem::exists(a.dir / "done.json"));
}

TEST(StageStore, AStageCutOffMidWayRunsAgainInTheSameFolder) {
  seqit::testing::TempDir tmp;
  StageStore store(tmp.path());
  const json key = {{"what", "eval"}};
  EXPECT_THROW(store.run("eval", key,
                         [&](const std::filesystem::path& dir) -> json {
                           seqit::testing::spit(dir / "partial.jsonl", "{\"id\": 1}\n");
                           throw Error("killed");
                         }),
               Error);
  EXPECT_FALSE(store.info("eval", key).done);
  bool saw_partial = false;
  store.run("eval", key, [&](const std::filesystem::path& dir) {
    saw_partial = std::filesystem::exists(dir / "partial.jsonl");
    return json::object();
  });
  EXPECT_TRUE(saw_partial);
  EXPECT_TRUE(store.info("eval", key).done);
}

TEST(StageStore, StatusListsThePlanWithEachStagesState) {
  seqit::testing::TempDir tmp;
  StageStore store(tmp.path());
  store.plan({{"data", {{"seed", 1}}}, {"train", {{"seed", 1}, {"steps", 5}}}});
  auto status = store.status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_FALSE(status[0].done);
  store.run("data", {{"seed", 1}}, [](const std::filesystem::path&) { return json::object(); });
  status = StageStore(tmp.path()).status();
  EXPECT_TRUE(status[0].done);
  EXPECT_FALSE(status[1].done);
  EXPECT_EQ(status[1].name, "train");
}

}  // namespace
}  // namespace seqit::study
