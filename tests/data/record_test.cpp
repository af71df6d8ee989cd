// The conversion rules between Instruction and Conversation (docs/data.md, "Conversion rules").
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/record.h"
#include "data_testing.h"
#include "util/error.h"

using namespace seqit::data;

namespace {
Instruction alpaca_like() {
  Instruction r;
  r.id = "a-7";
  r.system = "You are terse.";
  r.instruction = "Translate to French.";
  r.input = "Good morning";
  r.output = "Bonjour";
  r.meta.set_string("category", "translation");
  return r;
}
}  // namespace

TEST(Conversion, UserTurnJoinsInstructionAndInputWithOneSpace) {
  Instruction r = alpaca_like();
  EXPECT_EQ(user_prompt(r), "Translate to French. Good morning");
  r.input.clear();
  EXPECT_EQ(user_prompt(r), "Translate to French.");
}

TEST(Conversion, InstructionBecomesSystemUserAssistantAndComesBackUnchanged) {
  Instruction r = alpaca_like();
  Conversation c = to_conversation(r);
  ASSERT_EQ(c.messages.size(), 3u);
  EXPECT_EQ(c.messages[0].role, "system");
  EXPECT_EQ(c.messages[0].content, "You are terse.");
  EXPECT_EQ(c.messages[1].role, "user");
  EXPECT_EQ(c.messages[1].content, "Translate to French. Good morning");
  EXPECT_EQ(c.messages[2].role, "assistant");
  EXPECT_EQ(c.messages[2].content, "Bonjour");
  EXPECT_EQ(c.id, "a-7");
  // The input is remembered next to the other meta fields, in order.
  EXPECT_EQ(c.meta.dump(), R"({"category":"translation","input":"Good morning"})");
  EXPECT_EQ(to_instruction(c), r);
}

TEST(Conversion, EmptySystemAndOutputMakeNoMessages) {
  Instruction r;
  r.instruction = "Write a haiku.";
  Conversation c = to_conversation(r);
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages[0].role, "user");
  EXPECT_TRUE(c.meta.empty());
  EXPECT_EQ(to_instruction(c), r);
}

TEST(Conversion, SingleTurnConversationComesBackUnchanged) {
  Conversation c;
  c.id = "x";
  c.messages = {{"system", "sys", {}}, {"user", "hello there", {}}, {"assistant", "hi", {}}};
  c.meta.set_integer("turn", 1);
  Instruction r = to_instruction(c);
  EXPECT_EQ(r.system, "sys");
  EXPECT_EQ(r.instruction, "hello there");
  EXPECT_EQ(r.input, "");
  EXPECT_EQ(r.output, "hi");
  EXPECT_EQ(to_conversation(r), c);
}

TEST(Conversion, InputIsSplitBackOnlyWhenTheTurnEndsWithIt) {
  Conversation c;
  c.messages = {{"user", "Summarise this. A long text", {}}};
  c.meta.set_string("input", "another text");
  Instruction r = to_instruction(c);
  EXPECT_EQ(r.instruction, "Summarise this. A long text");
  EXPECT_EQ(r.input, "");
  EXPECT_EQ(r.meta.get_string("input"), "another text");  // not ours to consume: stays in meta

  c.meta.set_string("input", "A long text");
  r = to_instruction(c);
  EXPECT_EQ(r.instruction, "Summarise this.");
  EXPECT_EQ(r.input, "A long text");
  EXPECT_TRUE(r.meta.empty());
}

TEST(Conversion, EmptyInstructionWithInputRoundTrips) {
  Instruction r;
  r.input = "only an input";
  r.output = "ok";
  EXPECT_EQ(to_instruction(to_conversation(r)), r);
}

TEST(Conversion, MultiTurnConversationCannotBecomeAnInstruction) {
  Conversation c;
  c.messages = {
      {"user", "a", {}}, {"assistant", "b", {}}, {"user", "c", {}}, {"assistant", "d", {}}};
  EXPECT_TRUE(why_not_instruction(c).has_value());
  try {
    to_instruction(c);
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().field, "messages");
    EXPECT_TRUE(test::contains(e.message(), "4 messages (2 user turns)")) << e.what();
  }
  c.messages = {{"assistant", "b", {}}};
  EXPECT_THROW(to_instruction(c), seqit::Error);
  c.messages = {};
  EXPECT_THROW(to_instruction(c), seqit::Error);
  Message named{"user", "hi", {}};
  named.meta.set_string("name", "alice");
  c.messages = {named};
  EXPECT_TRUE(test::contains(*why_not_instruction(c), "name"));
}

TEST(Conversion, MetaInputKeyThatWouldBeOverwrittenIsAnError) {
  Instruction r = alpaca_like();
  r.meta.set_string("input", "something else");
  EXPECT_THROW(to_conversation(r), seqit::Error);
  r.input.clear();  // nothing to store: no conflict
  EXPECT_NO_THROW(to_conversation(r));
}

TEST(Meta, CopiesCompareByContentAndKeyOrder) {
  Meta a;
  a.set_string("b", "1");
  a.set_integer("a", 2);
  Meta copy = a;
  EXPECT_EQ(copy, a);
  EXPECT_EQ(copy.keys(), (std::vector<std::string>{"b", "a"}));
  Meta reordered;
  reordered.set_integer("a", 2);
  reordered.set_string("b", "1");
  EXPECT_NE(reordered, a);
  EXPECT_EQ(a.get_integer("a"), 2);
  EXPECT_FALSE(a.get_string("a").has_value());
  EXPECT_TRUE(a.erase("b"));
  EXPECT_FALSE(a.contains("b"));
  EXPECT_EQ(Meta(), Meta());
  Meta emptied;
  emptied.set_string("x", "y");
  emptied.erase("x");
  EXPECT_EQ(emptied, Meta());
  a.object()["nested"] = {{"k", {1, 2}}};
  EXPECT_EQ(a.dump(), R"({"a":2,"nested":{"k":[1,2]}})");
}
