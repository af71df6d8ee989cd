// The world's teacher: an llm::Backend that plays the Seq-Instruct generator for the synthetic
// world, so that the real pipeline (seqinstruct::run_pipeline) builds the study's SIT data.
//
// It answers the three kinds of chat request the pipeline sends with the *default* prompt set
// (configs/seqinstruct/default.yaml; seqinstruct/prompts.cpp builds them), recognised from the end
// of the last user message:
//
//   classify  the message holds "Now the instruction to decide on:" followed by
//             `Instruction: "<instruction> <input>"`. The teacher parses the world instruction,
//             draws A/B/C/D with the EditPolicy (choose_edit) and replies with one line of
//             reasoning and a final line "Option: X".
//   generate  the message ends with `#Original Instruction#: "<instruction> <input>"` and the
//             option's lead-in ("... decompose ...", "... prefix task ...", "... suffix task ...").
//             The teacher applies that edit (apply_edit) and replies
//             "<reasoning>\n#New Instruction#: <rendered chain>###". The new instruction never
//             contains the input, which stays the item's input.
//   respond   anything else: the message is the instruction + " " + input to answer. The reply is
//             reference_response() of the parsed chain (solve()), optionally with intermediate
//             steps corrupted (TeacherOptions::corrupt).
//
// Which pass a classify request belongs to is read from the instruction: the study's sources are
// single tasks (make_it_items), so a one-step chain is on its first pass (policy `first_pass`) and
// a longer one has been edited before (policy `later_pass`).
//
// Every draw comes from the request's seed (request.params.seed; 0 when it has none) and nothing
// else, so the same request gets the same reply, and the pipeline's retries (new seeds) get new
// draws. A request the teacher cannot read (not chat, n != 1, no user message, an instruction or
// input outside the world, an edit that does not apply) is answered with LlmError
// invalid_request and a message saying what was wrong.
//
// Threading: submit() queues the request and returns; one worker thread answers requests in
// submission order and calls `done` from that thread (never from inside submit()). The destructor
// answers whatever is still queued, then joins the worker.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "llm/backend.h"
#include "synth/chain.h"
#include "synth/edit.h"

namespace seqit::synth {

struct TeacherOptions {
  EditPolicy first_pass = EditPolicy::first_pass();  // one-step instructions
  EditPolicy later_pass = EditPolicy::later_pass();  // instructions of two or more steps
  // Probability that each intermediate "Step k:" line of a response is replaced by a wrong output
  // of the right shape (output_has_shape, not output_matches). The Answer line is never touched.
  double corrupt = 0;
};

// An instruction + input joined by the pipeline (seqinstruct::join_prompt), split back: the
// shortest prefix ending in "." that parses as a world instruction and leaves a world input.
struct WorldPrompt {
  Chain chain;
  std::string instruction;  // as written in the request
  std::string input;
};
std::optional<WorldPrompt> split_world_prompt(std::string_view full_prompt);

// `response` (reference_response format) with each intermediate step line replaced, with
// probability `rate`, by a wrong but well-shaped output drawn from `rng`; the Answer line is kept.
std::string corrupt_steps(const Chain& chain, std::string_view input, double rate, Rng& rng);

class Teacher final : public llm::Backend {
 public:
  explicit Teacher(TeacherOptions options = {});
  ~Teacher() override;
  Teacher(const Teacher&) = delete;
  Teacher& operator=(const Teacher&) = delete;

  void submit(llm::Request request, llm::ResponseCallback done) override;
  std::string default_model() const override { return "synth-teacher"; }
  std::string describe() const override;

  // The reply to one request, computed on the calling thread (what the worker runs).
  llm::Result<llm::Response> answer(const llm::Request& request) const;

  const TeacherOptions& options() const { return options_; }

 private:
  void loop();

  TeacherOptions options_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<llm::Request, llm::ResponseCallback>> queue_;
  bool quit_ = false;
  std::thread worker_;
};

}  // namespace seqit::synth
