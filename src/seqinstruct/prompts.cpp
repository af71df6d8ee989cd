#include "seqinstruct/prompts.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "seqinstruct/default_prompts.h"  // generated: kDefaultPromptsYaml
#include "util/error.h"
#include "util/random.h"

namespace seqit::seqinstruct {

char option_letter(Option option) {
  return static_cast<char>(option);
}

std::string_view default_prompts_yaml() {
  return kDefaultPromptsYaml;
}

std::string_view builtin_prompts_yaml(std::string_view name) {
  if (name == "default") return kDefaultPromptsYaml;
  if (name == "compact") return kCompactPromptsYaml;
  throw Error(fmt::format("no builtin prompt set '{}' (builtin: default, compact)", name));
}

namespace {

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(what).in_file(source_).in_field(field);
  }
  YAML::Node child(const YAML::Node& node, const std::string& key, const std::string& path) const {
    if (!node.IsMap()) fail(path, "expected a mapping");
    YAML::Node value = node[key];
    if (!value) fail(path.empty() ? key : path + "." + key, "missing");
    return value;
  }
  std::string text(const YAML::Node& node, const std::string& key, const std::string& path,
                   bool required = true) const {
    const std::string field = path.empty() ? key : path + "." + key;
    if (!node.IsMap()) fail(path, "expected a mapping");
    YAML::Node value = node[key];
    if (!value || value.IsNull()) {
      if (required) fail(field, "missing");
      return {};
    }
    if (!value.IsScalar()) fail(field, "expected text");
    return value.as<std::string>();
  }
  std::vector<YAML::Node> list(const YAML::Node& node, const std::string& key,
                               const std::string& path) const {
    const std::string field = path + "." + key;
    YAML::Node value = child(node, key, path);
    if (!value.IsSequence() || value.size() == 0) fail(field, "expected a non-empty list");
    std::vector<YAML::Node> out;
    for (const auto& item : value) out.push_back(item);
    return out;
  }

 private:
  std::string source_;
};

Option parse_letter(const Reader& r, const std::string& text, const std::string& field) {
  if (text == "A") return Option::A;
  if (text == "B") return Option::B;
  if (text == "C") return Option::C;
  if (text == "D") return Option::D;
  r.fail(field, "expected one of A, B, C, D, not '" + text + "'");
}

// Replaces every {name} in `tmpl` by `value`.
std::string fill(std::string tmpl, std::string_view name, std::string_view value) {
  const std::string key = "{" + std::string(name) + "}";
  size_t at = 0;
  while ((at = tmpl.find(key, at)) != std::string::npos) {
    tmpl.replace(at, key.size(), value);
    at += value.size();
  }
  return tmpl;
}

template <typename T>
std::vector<const T*> shuffled(const std::vector<T>& items, uint64_t seed) {
  std::vector<const T*> out;
  for (const auto& item : items) out.push_back(&item);
  SplitMix64 rng(seed);
  seeded_shuffle(out, rng);
  return out;
}

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

}  // namespace

PromptSet parse_prompt_set(std::string_view yaml, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    throw Error(e.msg).in_file(source).at_line(e.mark.line + 1, e.mark.column + 1);
  }
  Reader r(source);
  PromptSet set;
  set.source = source;
  set.name = r.text(root, "name", "");

  const YAML::Node extract = r.child(root, "extract", "");
  set.extract_system = r.text(extract, "system", "extract", false);
  set.extract_task = r.text(extract, "task", "extract");
  set.extract_query = r.text(extract, "query", "extract");
  if (set.extract_query.find("{prompt}") == std::string::npos)
    r.fail("extract.query", "must contain the placeholder {prompt}");
  const auto extract_examples = r.list(extract, "examples", "extract");
  for (size_t i = 0; i < extract_examples.size(); ++i) {
    const std::string path = fmt::format("extract.examples[{}]", i);
    set.extract_examples.push_back({r.text(extract_examples[i], "prompt", path),
                                    r.text(extract_examples[i], "instruction", path),
                                    r.text(extract_examples[i], "input", path, false)});
  }

  const YAML::Node classify = r.child(root, "classify", "");
  set.classify_system = r.text(classify, "system", "classify", false);
  set.classify_task = r.text(classify, "task", "classify");
  set.classify_query = r.text(classify, "query", "classify");
  if (set.classify_query.find("{instruction}") == std::string::npos)
    r.fail("classify.query", "must contain the placeholder {instruction}");
  const auto classify_examples = r.list(classify, "examples", "classify");
  for (size_t i = 0; i < classify_examples.size(); ++i) {
    const std::string path = fmt::format("classify.examples[{}]", i);
    ClassifyExample example;
    example.instruction = r.text(classify_examples[i], "instruction", path);
    example.reasoning = r.text(classify_examples[i], "reasoning", path);
    example.new_instruction = r.text(classify_examples[i], "new_instruction", path, false);
    example.option =
        parse_letter(r, r.text(classify_examples[i], "option", path), path + ".option");
    if (example.option != Option::D && example.new_instruction.empty())
      r.fail(path + ".new_instruction", "an A, B or C example needs its new instruction");
    set.classify_examples.push_back(std::move(example));
  }

  const YAML::Node generate = r.child(root, "generate", "");
  for (Option option : {Option::A, Option::B, Option::C}) {
    const std::string letter(1, option_letter(option));
    const std::string path = "generate." + letter;
    const YAML::Node node = r.child(generate, letter, "generate");
    GenerateSpec spec;
    spec.task = r.text(node, "task", path);
    spec.lead_in = r.text(node, "lead_in", path);
    spec.query = r.text(node, "query", path);
    if (spec.query.find("{instruction}") == std::string::npos)
      r.fail(path + ".query", "must contain the placeholder {instruction}");
    const auto examples = r.list(node, "examples", path);
    for (size_t i = 0; i < examples.size(); ++i) {
      const std::string ex = fmt::format("{}.examples[{}]", path, i);
      spec.examples.push_back({r.text(examples[i], "original", ex),
                               r.text(examples[i], "rationale", ex),
                               r.text(examples[i], "new_instruction", ex)});
    }
    set.generate.emplace(option, std::move(spec));
  }
  return set;
}

PromptSet load_prompt_set(const std::string& name_or_path) {
  if (name_or_path.empty()) return load_prompt_set("default");
  if (name_or_path == "default" || name_or_path == "compact")
    return parse_prompt_set(builtin_prompts_yaml(name_or_path), "builtin:" + name_or_path);
  std::ifstream in(name_or_path, std::ios::binary);
  if (!in)
    throw Error(
        "cannot read the prompt set (give \"default\", \"compact\" or a YAML file; `seqit "
        "seqinstruct "
        "prompts` prints the default to start from)")
        .in_file(name_or_path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_prompt_set(text.str(), name_or_path);
}

std::string join_prompt(std::string_view instruction, std::string_view input, bool input_first) {
  if (input.empty()) return std::string(instruction);
  if (instruction.empty()) return std::string(input);
  return input_first ? fmt::format("{} {}", input, instruction)
                     : fmt::format("{} {}", instruction, input);
}

std::vector<llm::Message> extract_messages(const PromptSet& set, std::string_view prompt,
                                           uint64_t seed) {
  // Multi-turn few-shot: the task and the first example share the first user turn.
  std::vector<llm::Message> messages;
  if (!set.extract_system.empty()) messages.push_back({"system", set.extract_system});
  bool first = true;
  for (const ExtractExample* example : shuffled(set.extract_examples, seed)) {
    std::string user = fill(set.extract_query, "prompt", example->prompt);
    if (first) user = set.extract_task + "\n\n" + user;
    first = false;
    messages.push_back({"user", std::move(user)});
    messages.push_back({"assistant", fmt::format("Instruction: {}###\nInput: {}###",
                                                 example->instruction, example->input)});
  }
  messages.push_back({"user", fill(set.extract_query, "prompt", prompt)});
  return messages;
}

std::vector<llm::Message> classify_messages(const PromptSet& set, std::string_view full_prompt,
                                            uint64_t seed) {
  std::string user = set.classify_task + "\n\nExamples:\n";
  for (const ClassifyExample* example : shuffled(set.classify_examples, seed)) {
    user += "\n" + fill(set.classify_query, "instruction", example->instruction) + "\n";
    user += example->reasoning;
    if (example->option != Option::D)
      user += " New instruction: " + in_quotes(example->new_instruction);
    user += fmt::format("\nOption: {}\n", option_letter(example->option));
  }
  user += "\nNow the instruction to decide on:\n";
  user += fill(set.classify_query, "instruction", full_prompt);
  std::vector<llm::Message> messages;
  if (!set.classify_system.empty()) messages.push_back({"system", set.classify_system});
  messages.push_back({"user", std::move(user)});
  return messages;
}

std::vector<llm::Message> generate_messages(const PromptSet& set, Option option,
                                            std::string_view full_prompt, uint64_t seed) {
  const auto it = set.generate.find(option);
  if (it == set.generate.end())
    throw Error(fmt::format("no generation prompt for option {}", option_letter(option)));
  const GenerateSpec& spec = it->second;
  std::string user = spec.task + "\n\n";
  int k = 1;
  for (const GenerateExample* example : shuffled(spec.examples, seed)) {
    user += fmt::format("*** Example {} ***\n", k);
    user += fill(spec.query, "instruction", example->original) + "\n";
    user += spec.lead_in + "\n" + example->rationale + "\n";
    user += "#New Instruction#: " + example->new_instruction + "###\n";
    user += fmt::format("*** End of example {} ***\n\n", k);
    ++k;
  }
  user += fill(spec.query, "instruction", full_prompt) + "\n" + spec.lead_in;
  return {{"user", std::move(user)}};
}

std::vector<llm::Message> respond_messages(std::string_view system, std::string_view user_prompt) {
  std::vector<llm::Message> messages;
  if (!system.empty()) messages.push_back({"system", std::string(system)});
  messages.push_back({"user", std::string(user_prompt)});
  return messages;
}

uint64_t request_seed(uint64_t run_seed, std::string_view item_id, int iteration,
                      std::string_view stage, int attempt) {
  // FNV-1a over the parts, then SplitMix64 to spread the bits.
  uint64_t h = 0xcbf29ce484222325ull ^ run_seed;
  auto mix = [&](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;
    h *= 0x100000001b3ull;
  };
  mix(item_id);
  mix(std::to_string(iteration));
  mix(stage);
  mix(std::to_string(attempt));
  SplitMix64 rng(h);
  return rng.next() >> 1;  // 63 bits: servers that read the seed as a signed integer accept it
}

}  // namespace seqit::seqinstruct
