// The judge's prompts and the strict reading of its replies: well-formed, malformed and
// adversarial.
#include "eval/judge.h"

#include <gtest/gtest.h>

#include <cmath>

#include <functional>
#include <random>

#include "infer/constraint.h"
#include "llm/local_backend.h"
#include "testing.h"

namespace seqit::eval {
namespace {

TEST(JudgePrompts, CarryTheTextsAndTheAnswerFormat) {
  const std::string f =
      following_judge_prompt("Translate X, then answer it.", "Here is the translation...");
  EXPECT_NE(f.find("Translate X, then answer it."), std::string::npos);
  EXPECT_NE(f.find("Here is the translation..."), std::string::npos);
  EXPECT_NE(f.find("FOLLOWED: YES"), std::string::npos);
  EXPECT_NE(f.find("SUBTASK <number>"), std::string::npos);
  const std::string q = quality_judge_prompt("Write a haiku.", "An old silent pond");
  EXPECT_NE(q.find("SCORE: <number>"), std::string::npos);
  EXPECT_NE(q.find("An old silent pond"), std::string::npos);
  const std::string p = pairwise_judge_prompt("Q?", "first answer", "second answer");
  EXPECT_LT(p.find("first answer"), p.find("second answer"));
  EXPECT_NE(p.find("PREFERRED: TIE"), std::string::npos);
}

// ---- quality
// ----------------------------------------------------------------------------------------------

TEST(QualityReply, ReadsTheScoreLine) {
  EXPECT_EQ(parse_quality_reply("Clear and correct.\nSCORE: 4").value, 4);
  EXPECT_EQ(parse_quality_reply("Fine.\n\n**SCORE:** 5\n").value, 5);
  EXPECT_EQ(parse_quality_reply("Fine.\n**Score: 2**").value, 2);
  EXPECT_EQ(parse_quality_reply("ok\n  score :  3 \n").value, 3);
  EXPECT_EQ(parse_quality_reply("ok\n### SCORE: 1.").value, 1);
  EXPECT_EQ(parse_quality_reply("ok\nSCORE: 4/5").value, 4);
  // Restating the same score is not a conflict.
  EXPECT_EQ(parse_quality_reply("SCORE: 3\nTo be clear:\nSCORE: 3").value, 3);
  // An invalid line before a valid last one is passed over.
  EXPECT_EQ(parse_quality_reply("SCORE: 4.5 is tempting\nSCORE: 4").value, 4);
}

TEST(QualityReply, RefusesWhatIsNotAStrictAnswer) {
  const auto out_of_range = parse_quality_reply("Brilliant.\nSCORE: 6");
  EXPECT_FALSE(out_of_range.ok());
  EXPECT_NE(out_of_range.problem.find("outside 1..5"), std::string::npos) << out_of_range.problem;
  EXPECT_FALSE(parse_quality_reply("SCORE: 0").ok());
  EXPECT_FALSE(parse_quality_reply("SCORE: 4.5").ok());
  EXPECT_FALSE(parse_quality_reply("SCORE: four").ok());
  EXPECT_FALSE(parse_quality_reply("SCORE:").ok());
  // Only in prose: not an answer line.
  const auto prose = parse_quality_reply("I would give this SCORE: 4 overall.");
  EXPECT_FALSE(prose.ok());
  EXPECT_NE(prose.problem.find("no `SCORE: ...` answer line"), std::string::npos) << prose.problem;
  EXPECT_FALSE(parse_quality_reply("").ok());
  // Two different scores: the judge argued both ways.
  const auto conflict = parse_quality_reply("SCORE: 2\nOn reflection it is better.\nSCORE: 4");
  EXPECT_FALSE(conflict.ok());
  EXPECT_NE(conflict.problem.find("conflicting"), std::string::npos) << conflict.problem;
}

// ---- pairwise
// ---------------------------------------------------------------------------------------------

TEST(PairwiseReply, ReadsThePreference) {
  EXPECT_EQ(parse_pairwise_reply("Response 2 is more accurate.\nPREFERRED: 2").value,
            Preference::kSecond);
  EXPECT_EQ(parse_pairwise_reply("**PREFERRED:** 1").value, Preference::kFirst);
  EXPECT_EQ(parse_pairwise_reply("Both equally good.\npreferred: tie").value, Preference::kTie);
  EXPECT_EQ(parse_pairwise_reply("> PREFERRED: `TIE`").value, Preference::kTie);
}

TEST(PairwiseReply, RefusesAdversarialAndMalformedReplies) {
  EXPECT_FALSE(parse_pairwise_reply("I prefer the first response.").ok());  // prose only
  EXPECT_FALSE(parse_pairwise_reply("PREFERRED: 1 or 2").ok());             // both
  EXPECT_FALSE(parse_pairwise_reply("PREFERRED: 1 and 2").ok());
  EXPECT_FALSE(parse_pairwise_reply("PREFERRED: 3").ok());
  EXPECT_FALSE(parse_pairwise_reply("PREFERRED: Response 1").ok());
  EXPECT_FALSE(parse_pairwise_reply("PREFERRED: 1\nHmm, actually the other.\nPREFERRED: 2")
                   .ok());  // conflict
  // The format echoed from the prompt is not an answer.
  EXPECT_FALSE(parse_pairwise_reply("PREFERRED: 1     (Response 1 is better)").ok());
}

TEST(PairwiseOrders, OnlyAgreementAcrossOrdersWins) {
  using P = Preference;
  // A shown first and picked first; B shown first and A (now second) picked: A wins.
  EXPECT_EQ(combine_pairwise_orders(P::kFirst, P::kSecond), PairVerdict::kAWins);
  EXPECT_EQ(combine_pairwise_orders(P::kSecond, P::kFirst), PairVerdict::kBWins);
  // Always the first shown (position bias): inconsistent, a tie.
  EXPECT_EQ(combine_pairwise_orders(P::kFirst, P::kFirst), PairVerdict::kTie);
  EXPECT_EQ(combine_pairwise_orders(P::kSecond, P::kSecond), PairVerdict::kTie);
  EXPECT_EQ(combine_pairwise_orders(P::kTie, P::kSecond), PairVerdict::kTie);
  EXPECT_EQ(combine_pairwise_orders(P::kTie, P::kTie), PairVerdict::kTie);
  const auto a = parse_pairwise_reply("PREFERRED: 1"), b = parse_pairwise_reply("PREFERRED: 2");
  EXPECT_EQ(combine_pairwise_orders(a, b), PairVerdict::kAWins);
  EXPECT_EQ(combine_pairwise_orders(a, parse_pairwise_reply("I like both")), std::nullopt);
}

// ---- following
// --------------------------------------------------------------------------------------------

TEST(FollowingReply, ReadsSubtasksAndTheVerdict) {
  const auto r = parse_following_reply(
      "SUBTASK 1: translate the question into French -> DONE\n"
      "SUBTASK 2: answer the question -> DONE\n"
      "FOLLOWED: YES\n");
  ASSERT_TRUE(r.ok()) << r.problem;
  EXPECT_TRUE(r.value->followed);
  ASSERT_EQ(r.value->subtasks.size(), 2u);
  EXPECT_EQ(r.value->subtasks[0].number, 1);
  EXPECT_EQ(r.value->subtasks[0].description, "translate the question into French");
  EXPECT_TRUE(r.value->subtasks[1].done);

  const auto no = parse_following_reply(
      "- **SUBTASK 1:** paraphrase -> DONE\n- **SUBTASK 2:** answer -> **NOT DONE**\n\n**FOLLOWED: "
      "NO**");
  ASSERT_TRUE(no.ok()) << no.problem;
  EXPECT_FALSE(no.value->followed);
  EXPECT_FALSE(no.value->subtasks[1].done);

  // All done but out of order: NO is a legitimate verdict.
  EXPECT_TRUE(
      parse_following_reply("SUBTASK 1: a -> DONE\nSUBTASK 2: b -> DONE\nFOLLOWED: NO").ok());
  // No sub-task lines: the verdict alone.
  EXPECT_EQ(parse_following_reply("followed: yes").value->followed, true);
}

TEST(FollowingReply, RefusesContradictionsAndMalformedLines) {
  const auto contradiction =
      parse_following_reply("SUBTASK 1: a -> DONE\nSUBTASK 2: b -> NOT DONE\nFOLLOWED: YES");
  EXPECT_FALSE(contradiction.ok());
  EXPECT_NE(contradiction.problem.find("sub-task 2"), std::string::npos) << contradiction.problem;
  EXPECT_FALSE(parse_following_reply("SUBTASK 1: a -> MAYBE\nFOLLOWED: NO").ok());
  EXPECT_FALSE(parse_following_reply("SUBTASK one: a -> DONE\nFOLLOWED: YES").ok());
  EXPECT_FALSE(parse_following_reply("SUBTASK 1: a (done)\nFOLLOWED: YES").ok());
  EXPECT_FALSE(parse_following_reply("FOLLOWED: PARTIALLY").ok());
  EXPECT_FALSE(parse_following_reply("FOLLOWED: YES\nFOLLOWED: NO").ok());
  EXPECT_FALSE(parse_following_reply("The response followed the instruction.").ok());
}

// ---- constrained replies
// --------------------------------------------------------------------------------------------

// Random texts of each answer-format language (random byte walks through its automaton, steered
// to the end after a while) are all read by the strict parsers: a constrained judge cannot return
// an unparsable reply.
TEST(ConstrainedJudge, EveryTextOfTheAnswerFormatsParses) {
  std::mt19937 rng(5);
  struct Format {
    std::string pattern;
    std::function<bool(const std::string&, std::string*)> parses;
  };
  const std::vector<Format> formats = {
      {following_reply_pattern(),
       [](const std::string& t, std::string* why) {
         auto r = parse_following_reply(t);
         *why = r.problem;
         return r.ok();
       }},
      {quality_reply_pattern(),
       [](const std::string& t, std::string* why) {
         auto r = parse_quality_reply(t);
         *why = r.problem;
         return r.ok();
       }},
      {pairwise_reply_pattern(), [](const std::string& t, std::string* why) {
         auto r = parse_pairwise_reply(t);
         *why = r.problem;
         return r.ok();
       }}};
  for (const Format& f : formats) {
    const auto c = infer::Constraint::regex(f.pattern);
    for (int walk = 0; walk < 400; ++walk) {
      int32_t state = c->start();
      std::string text;
      for (int step = 0; !c->complete(state); ++step) {
        ASSERT_LT(step, 5000);
        if (c->accepting(state) && rng() % 8 == 0) break;
        // Bytes that keep the text alive; printable ASCII mostly, so lines look like prose.
        std::vector<int> next;
        for (int b = 0; b < 256; ++b) {
          if (c->next(state, static_cast<uint8_t>(b)) == infer::Constraint::kDead) continue;
          if (step > 150 &&
              c->distance(c->next(state, static_cast<uint8_t>(b))) >= c->distance(state))
            continue;  // head for the end
          next.push_back(b);
        }
        ASSERT_FALSE(next.empty()) << "'" << text << "'";
        // Mostly ASCII, so that lines look like prose (inside a character, its continuation).
        std::vector<int> ascii;
        for (int b : next)
          if (b < 0x80) ascii.push_back(b);
        if (!ascii.empty() && rng() % 4) next = ascii;
        const int b = next[rng() % next.size()];
        text += static_cast<char>(b);
        state = c->next(state, static_cast<uint8_t>(b));
      }
      ASSERT_TRUE(c->accepting(state));
      std::string why;
      EXPECT_TRUE(f.parses(text, &why)) << "'" << text << "': " << why;
    }
  }
}

// stories260K as a (hopeless) judge: constrained, every quality and pairwise reply parses; free,
// almost none do.
TEST(ConstrainedJudge, ATinyLocalJudgeAlwaysAnswersInFormat) {
  auto judge =
      llm::LocalBackend::open(testing::shared_data("models/stories260K/stories260K.bin").string(),
                              testing::shared_data("models/stories260K/tok512.bin").string());
  int parsed_constrained = 0, parsed_free = 0, total = 0;
  for (int i = 0; i < 8; ++i) {
    for (bool pairwise : {false, true}) {
      llm::Request r;
      r.kind = llm::RequestKind::chat;
      r.messages = {{"user", pairwise ? pairwise_judge_prompt("Tell a story.", "Once", "Lily")
                                      : quality_judge_prompt("Tell a story.", "Once upon a time")}};
      r.params.temperature = 1.0;
      r.params.seed = static_cast<uint64_t>(i);
      r.params.max_tokens = 300;
      auto parses = [&](const std::string& t) {
        return pairwise ? parse_pairwise_reply(t).ok() : parse_quality_reply(t).ok();
      };
      auto free = judge->submit_async(r).get();
      ASSERT_TRUE(free.ok());
      parsed_free += parses(free.value().text());
      r.response_format.kind = llm::ResponseFormat::Kind::regex;
      r.response_format.pattern = pairwise ? pairwise_reply_pattern() : quality_reply_pattern();
      auto constrained = judge->submit_async(r).get();
      ASSERT_TRUE(constrained.ok()) << constrained.error().describe();
      const std::string text = constrained.value().text();
      EXPECT_TRUE(parses(text)) << text;
      parsed_constrained += parses(text);
      ++total;
    }
  }
  EXPECT_EQ(parsed_constrained, total);
  EXPECT_LE(parsed_free, total / 4);
}

// AlpacaEval 2's weighting: the probabilities of 1, 2 and TIE at the token that starts the value.
TEST(PairwiseProbabilities, ReadFromTheAnswerTokensAlternatives) {
  using llm::GeneratedToken;
  auto tok = [](std::string text, std::vector<std::pair<std::string, double>> top = {}) {
    GeneratedToken t;
    t.token = std::move(text);
    t.logprob = top.empty() ? 0.0 : std::log(top[0].second);
    for (auto& [alt, p] : top) t.top.push_back({alt, std::log(p)});
    return t;
  };
  // The value's token carries its leading space: alternatives must too.
  auto p = pairwise_probabilities(
      {tok("Both are fine, the first is clearer.\n"), tok("PREF"), tok("ERRED"), tok(":"),
       tok(" 1", {{" 1", 0.5}, {" 2", 0.25}, {" TIE", 0.125}, {"\n", 0.1}, {"1", 0.025}})});
  ASSERT_TRUE(p);
  EXPECT_NEAR((*p)[0], 0.5 / 0.875, 1e-9);
  EXPECT_NEAR((*p)[1], 0.25 / 0.875, 1e-9);
  EXPECT_NEAR((*p)[2], 0.125 / 0.875, 1e-9);
  // The space in its own token; lower case; the last PREFERRED line counts.
  p = pairwise_probabilities({tok("preferred: 1\nPreferred:"), tok(" "),
                              tok("tie", {{"tie", 0.6}, {"2", 0.3}, {"1", 0.1}})});
  ASSERT_TRUE(p);
  EXPECT_NEAR((*p)[2], 0.6, 1e-9);
  EXPECT_NEAR((*p)[1], 0.3, 1e-9);
  // Without alternatives the chosen token alone decides.
  p = pairwise_probabilities({tok("PREFERRED: "), tok("2")});
  ASSERT_TRUE(p);
  EXPECT_EQ((*p)[1], 1.0);
  // A chosen token outside the alternatives (held by a constraint) still counts.
  p = pairwise_probabilities({tok("PREFERRED: "), tok("1", {{"x", 0.5}, {"y", 0.25}})});
  ASSERT_TRUE(p);
  EXPECT_EQ((*p)[0], 1.0);
  EXPECT_FALSE(pairwise_probabilities({tok("I cannot decide.")}));
  EXPECT_FALSE(pairwise_probabilities({}));
  EXPECT_FALSE(pairwise_probabilities({tok("PREFERRED: "), tok("x", {{"x", 0.9}, {"y", 0.1}})}));
}

}  // namespace
}  // namespace seqit::eval
