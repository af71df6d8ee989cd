#include "llm/in_flight.h"

#include <gtest/gtest.h>

#include <set>

#include "scripted_backend.h"

namespace seqit::llm {
namespace {
using testing::ScriptedBackend;

Request ask(size_t i) {
  Request r;
  r.kind = RequestKind::chat;
  r.messages = {{"user", std::to_string(i)}};
  return r;
}

TEST(ForEachReply, AsksWhatIsNotSkippedAtMostMaxInFlightAndAnswersOnThisThread) {
  ScriptedBackend backend(
      [](const Request& r) { return ScriptedBackend::reply("a" + r.messages[0].content); });
  std::set<size_t> seen;
  const auto caller = std::this_thread::get_id();
  for_each_reply(
      backend, 20,
      [](size_t i) -> std::optional<Request> {
        if (i % 5 == 0) return std::nullopt;
        return ask(i);
      },
      3, {},
      [&](size_t i, Result<Response>&& r) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        EXPECT_EQ(r.value().text(), "a" + std::to_string(i));
        seen.insert(i);
        return true;
      });
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(backend.requests().size(), 16u);
  EXPECT_LE(backend.max_outstanding(), 3u);
}

TEST(ForEachReply, FalseOrStopEndsSubmittingAndDrainsWhatIsInFlight) {
  ScriptedBackend backend([](const Request&) { return ScriptedBackend::reply("x"); });
  int replies = 0;
  for_each_reply(
      backend, 100, [](size_t i) -> std::optional<Request> { return ask(i); }, 4, {},
      [&](size_t, Result<Response>&&) { return ++replies < 5; });
  // Stopped at the 5th reply: what was in flight then still came back, nothing more was sent.
  EXPECT_EQ(static_cast<size_t>(replies), backend.requests().size());
  EXPECT_LT(replies, 5 + 4);
  int asked = 0;
  for_each_reply(
      backend, 100,
      [&](size_t i) -> std::optional<Request> {
        ++asked;
        return ask(i);
      },
      4, [&] { return asked >= 7; }, [](size_t, Result<Response>&&) { return true; });
  EXPECT_EQ(asked, 7);
}

}  // namespace
}  // namespace seqit::llm
