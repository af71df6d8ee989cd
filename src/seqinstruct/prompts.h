// The Seq-Instruct prompts: a prompt set (task descriptions, few-shot examples, answer formats)
// read from YAML, and the builders that turn one item into the messages of each stage (SIT_SPEC
// §1.3, §1.5, §1.6, §1.8). The default set is configs/seqinstruct/default.yaml, compiled into the
// binary; any edited copy can be passed by path.
//
// Every builder puts the item's text into the prompt exactly once (SIT_SPEC §8 item 3: the
// reference appends the input a second time), works with an empty input, and shuffles the few-shot
// examples with a seed so that a rerun builds byte-identical prompts (the response cache then
// answers them).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "llm/backend.h"

namespace seqit::seqinstruct {

// The edit a classification chooses (SIT_SPEC §1.5).
enum class Option : char { A = 'A', B = 'B', C = 'C', D = 'D' };
char option_letter(Option option);

struct ExtractExample {
  std::string prompt, instruction, input;
};
struct ClassifyExample {
  std::string instruction, reasoning, new_instruction;  // new_instruction empty for D
  Option option = Option::D;
};
struct GenerateExample {
  std::string original, rationale, new_instruction;
};
struct GenerateSpec {
  std::string task, lead_in, query;
  std::vector<GenerateExample> examples;
};

struct PromptSet {
  std::string name;
  std::string source;  // the file it was read from, or "builtin:default"

  std::string extract_system, extract_task, extract_query;
  std::vector<ExtractExample> extract_examples;

  std::string classify_system, classify_task, classify_query;
  std::vector<ClassifyExample> classify_examples;

  std::map<Option, GenerateSpec> generate;  // A, B and C
};

// The builtin sets' YAML text (configs/seqinstruct/<name>.yaml as compiled in): "default" (the
// paper's structure, 5 / 3 / 4 examples) and "compact" (one example per stage, for small-context
// models and smoke runs). Throws seqit::Error for another name.
std::string_view default_prompts_yaml();
std::string_view builtin_prompts_yaml(std::string_view name);
// Parses a prompt set; `source` names it in errors ("file.yaml: field 'classify.examples[2].option'
// ..."). Throws seqit::Error for a missing or wrong field.
PromptSet parse_prompt_set(std::string_view yaml, const std::string& source);
// "default" or "compact" (builtin sets) or a path to a YAML file.
PromptSet load_prompt_set(const std::string& name_or_path);

// How the instruction and its input are joined into one prompt. Like the reference's position
// field (SIT_SPEC §1.4): instruction first ("right": the input follows), or input first ("left").
// The input appears exactly once; an empty input leaves the instruction alone.
std::string join_prompt(std::string_view instruction, std::string_view input,
                        bool input_first = false);

// Stage builders. `seed` orders the few-shot examples (a Fisher-Yates shuffle over SplitMix64, so
// the order is the same on every platform).
std::vector<llm::Message> extract_messages(const PromptSet& set, std::string_view prompt,
                                           uint64_t seed);
std::vector<llm::Message> classify_messages(const PromptSet& set, std::string_view full_prompt,
                                            uint64_t seed);
// option is A, B or C.
std::vector<llm::Message> generate_messages(const PromptSet& set, Option option,
                                            std::string_view full_prompt, uint64_t seed);
// The response stage (SIT_SPEC §1.8): [system (only when not empty)] + user = the prompt.
std::vector<llm::Message> respond_messages(std::string_view system, std::string_view user_prompt);

// A seed for one request: mixes the run's seed with the item, iteration, stage and attempt, so that
// a retry asks with a new seed and a rerun asks with the same one.
uint64_t request_seed(uint64_t run_seed, std::string_view item_id, int iteration,
                      std::string_view stage, int attempt);

}  // namespace seqit::seqinstruct
