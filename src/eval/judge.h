// SeqEval's LLM judge: the prompts we send and the strict reading of what comes back.
//
// Three judgements, each ending in one machine-readable answer line:
//   following  the judge lists the sub-tasks it finds in the instruction, one line each
//              (`SUBTASK n: <what> -> DONE` or `-> NOT DONE`), then `FOLLOWED: YES` when the
//              response carried out every one of them in the order asked, else `FOLLOWED: NO`;
//   quality    a short justification, then `SCORE: n` with n in 1..5;
//   pairwise   a comparison of two responses, then `PREFERRED: 1`, `PREFERRED: 2` or `PREFERRED:
//   TIE`.
//
// Reading is strict on purpose: a judgement we are unsure of is reported as unparsable, with the
// reason, and counted as such in the report, never guessed. An answer line is a line that holds
// only `KEY: value` once whitespace and markdown decoration (`**`, `__`, `#`, `>`, `-`, backticks)
// are stripped, so `**SCORE:** 4` and `  score : 4 ` are read but "I'd give it SCORE: 4" in prose
// is not. The value is the last answer line's. The reply is unparsable when that line's value is
// invalid
// ("4.5", "6", "1 or 2"), when an earlier valid answer line has a different value (the judge
// changed its mind or argued both ways), or when there is no answer line at all ("I prefer the
// first response"). An invalid answer line before a valid last one is passed over.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llm/backend.h"

namespace seqit::eval {

// A parsed judge reply: `value` when the reply was read, else `problem` says why not.
template <typename T>
struct JudgeReading {
  std::optional<T> value;
  std::string problem;  // empty when `value` is set
  bool ok() const { return value.has_value(); }
};

// ---- Prompts (the user message sent to the judge)
// ------------------------------------------------------

std::string following_judge_prompt(std::string_view instruction, std::string_view response);
std::string quality_judge_prompt(std::string_view instruction, std::string_view response);
// The responses are shown as "Response 1" (first) and "Response 2" (second).
std::string pairwise_judge_prompt(std::string_view instruction, std::string_view first,
                                  std::string_view second);

// ---- Constrained replies
// The answer formats above as regular expressions (infer/constraint.h syntax), each matched only by
// replies the parsers below read: a few lines of reasoning without ':' (so no prose line can pass
// for an answer line), then the answer line; for following, 1-6 SUBTASK lines (descriptions of up
// to 60 characters without ':', '-' or '>') and a FOLLOWED line that cannot contradict them. Sent
// as a response format, they make an unparsable judge reply impossible where the backend enforces
// it (the local engine; vLLM's guided_regex).
std::string following_reply_pattern();
std::string quality_reply_pattern();
std::string pairwise_reply_pattern();

// ---- Replies
// --------------------------------------------------------------------------------------------

struct SubtaskCheck {
  int number = 0;           // as the judge numbered it
  std::string description;  // the judge's words
  bool done = false;
};
struct FollowingJudgement {
  bool followed = false;
  std::vector<SubtaskCheck> subtasks;  // the SUBTASK lines the judge wrote (may be empty)
};
// FOLLOWED: YES/NO. Also unparsable when FOLLOWED: YES stands beside a sub-task marked NOT DONE (a
// self-contradicting judge) or a SUBTASK line is malformed. FOLLOWED: NO with every sub-task DONE
// is read as written: the response may have done them all but not in the order asked. Without
// SUBTASK lines the FOLLOWED line alone decides.
JudgeReading<FollowingJudgement> parse_following_reply(std::string_view reply);

// SCORE: n, n an integer 1..5 (also written "n/5").
JudgeReading<int> parse_quality_reply(std::string_view reply);

enum class Preference { kFirst, kSecond, kTie };
// PREFERRED: 1 | 2 | TIE.
JudgeReading<Preference> parse_pairwise_reply(std::string_view reply);

// Combining the two presentation orders of a pair (A, B) to cancel the judge's position bias:
// `a_shown_first` is the reading when A was response 1, `b_shown_first` when B was response 1. A
// wins only when both orders pick A, B only when both pick B; anything else (a tie in either order,
// or each order picking whichever came first or second) is a tie.
enum class PairVerdict { kAWins, kBWins, kTie };
PairVerdict combine_pairwise_orders(Preference a_shown_first, Preference b_shown_first);
// The same over readings: std::nullopt when either order was unparsable.
std::optional<PairVerdict> combine_pairwise_orders(const JudgeReading<Preference>& a_shown_first,
                                                   const JudgeReading<Preference>& b_shown_first);

// The judge's probabilities of PREFERRED 1, 2 and TIE (in that order) at the token where its
// answer value starts, from the reply's token log-probabilities (Request::top_logprobs): the
// step's top alternatives (and the chosen token) whose text goes on to the value "1", "2" or
// "TIE", renormalised over the three. AlpacaEval 2 weights each verdict by such probabilities
// instead of counting it whole. nullopt when the reply has no PREFERRED line, no log-probabilities,
// or none of the three among the alternatives.
std::optional<std::array<double, 3>> pairwise_probabilities(
    const std::vector<llm::GeneratedToken>& tokens);

std::string_view to_string(Preference p);
std::string_view to_string(PairVerdict v);

}  // namespace seqit::eval
