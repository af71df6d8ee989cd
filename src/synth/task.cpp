#include "synth/task.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "util/error.h"

namespace seqit::synth {

namespace {

std::vector<TaskInfo> make_tasks() {
  using T = TaskId;
  std::vector<TaskInfo> t = {
      {T::kReverse,
       "reverse",
       {},
       {"reverse the order of the words", "write the words backwards",
        "put the words in reverse order", "flip the order of the words", "reverse the word order",
        // held out
        "write the words in reverse order", "give the words from last to first"},
       kTrainPhrasings},
      {T::kUpper,
       "upper",
       {},
       {"upper-case the words", "write the words in capital letters",
        "convert the text to upper case", "capitalise every letter", "make every letter upper-case",
        // held out
        "write every letter in upper case", "put the text in capital letters"},
       kTrainPhrasings},
      {T::kSort,
       "sort",
       {},
       {"sort the words alphabetically", "put the words in alphabetical order",
        "arrange the words from a to z", "order the words alphabetically", "sort the words",
        // held out
        "write the words in alphabetical order", "arrange the words alphabetically"},
       kTrainPhrasings},
      {T::kCount,
       "count",
       {},
       {"count the words", "say how many words there are", "give the number of words",
        "count how many words the text has", "tell me the word count",
        // held out
        "give the word count", "say the number of words"},
       kTrainPhrasings},
      {T::kFirst,
       "first",
       {},
       {"take the first word", "keep only the first word", "give the first word",
        "return the word at the start", "drop all but the first word",
        // held out
        "return only the first word", "keep the word at the start"},
       kTrainPhrasings},
      {T::kLast,
       "last",
       {},
       {"take the last word", "keep only the last word", "give the last word",
        "return the word at the end", "drop all but the last word",
        // held out
        "return only the last word", "keep the word at the end"},
       kTrainPhrasings},
      {T::kSum,
       "sum",
       {},
       {"add up the numbers", "sum the numbers", "give the total of the numbers", "compute the sum",
        "work out the sum of the numbers",
        // held out
        "add the numbers up", "give the sum of the numbers"},
       kTrainPhrasings},
      {T::kMax,
       "max",
       {},
       {"find the largest number", "give the biggest number", "take the maximum",
        "return the highest number", "pick the greatest number",
        // held out
        "give the largest number", "find the highest number"},
       kTrainPhrasings},
      {T::kLookup,
       "lookup",
       {},
       {"look up the key in the facts", "answer the question from the facts",
        "find the value of the key", "use the facts to answer", "give the value for the asked key",
        // held out
        "give the answer from the facts", "look up the value of the key"},
       kTrainPhrasings},
      {T::kToVellan,
       "to_vellan",
       {},
       {"translate the words into vellan", "translate the text to vellan", "say it in vellan",
        "write the words in vellan", "convert the words to vellan",
        // held out
        "put the words into vellan", "give the text in vellan"},
       kTrainPhrasings},
      {T::kToEnglish,
       "to_english",
       {},
       {"translate the words into english", "translate the text to english", "say it in english",
        "write the words in english", "convert the words to english",
        // held out
        "put the words into english", "give the text in english"},
       kTrainPhrasings},
      {T::kRepeat,
       "repeat",
       {},
       {"repeat the input", "copy the text", "say the text again", "write the input out again",
        "echo the input",
        // held out
        "write the text again", "give the input again"},
       kTrainPhrasings},
      {T::kSortUpper,
       "sort_upper",
       {T::kSort, T::kUpper},
       {"sort the words and upper-case them",
        "put the words in alphabetical order and capitalise them",
        "sort the words and write them in capital letters"},
       3},
      {T::kReverseUpper,
       "reverse_upper",
       {T::kReverse, T::kUpper},
       {"reverse the words and upper-case them", "write the words backwards in capital letters",
        "reverse the order of the words and capitalise them"},
       3},
      {T::kSortFirst,
       "sort_first",
       {T::kSort, T::kFirst},
       {"sort the words and take the first one", "give the alphabetically first word",
        "put the words in alphabetical order and keep the first"},
       3},
      {T::kToVellanReverse,
       "to_vellan_reverse",
       {T::kToVellan, T::kReverse},
       {"translate the words into vellan and reverse them", "reverse the words in vellan",
        "say it in vellan backwards"},
       3},
      {T::kLookupToVellan,
       "lookup_to_vellan",
       {T::kLookup, T::kToVellan},
       {"look up the key and translate the answer into vellan",
        "answer the question from the facts in vellan",
        "find the value of the key and say it in vellan"},
       3},
  };
  for (size_t i = 0; i < t.size(); ++i)
    if (static_cast<size_t>(t[i].id) != i) throw Error("synth: task table out of TaskId order");
  return t;
}

const std::vector<TaskInfo>& tasks() {
  static const std::vector<TaskInfo> t = make_tasks();
  return t;
}

std::vector<std::string> words_of(std::string_view input) {
  return split_world_tokens(input);
}

std::string join_words(const std::vector<std::string>& words) {
  return join_world_tokens(words);
}

int to_int(const std::string& token) {
  int v = 0;
  std::from_chars(token.data(), token.data() + token.size(), v);
  return v;
}

}  // namespace

const TaskInfo& task_info(TaskId id) {
  auto i = static_cast<size_t>(id);
  if (i >= tasks().size()) throw Error(fmt::format("synth: unknown task id {}", i));
  return tasks()[i];
}

const std::vector<TaskId>& all_tasks() {
  static const std::vector<TaskId> ids = [] {
    std::vector<TaskId> v;
    for (const TaskInfo& t : tasks()) v.push_back(t.id);
    return v;
  }();
  return ids;
}

const std::vector<TaskId>& atomic_tasks() {
  static const std::vector<TaskId> ids(all_tasks().begin(), all_tasks().begin() + kAtomicTaskCount);
  return ids;
}

const std::vector<TaskId>& compound_tasks() {
  static const std::vector<TaskId> ids(all_tasks().begin() + kAtomicTaskCount, all_tasks().end());
  return ids;
}

std::optional<TaskId> task_by_name(std::string_view name) {
  for (const TaskInfo& t : tasks())
    if (t.name == name) return t.id;
  return std::nullopt;
}

bool is_held_out_phrasing(TaskId id, int phrasing) {
  const TaskInfo& t = task_info(id);
  if (phrasing < 0 || phrasing >= static_cast<int>(t.phrasings.size()))
    throw Error(fmt::format("synth: task {} has no phrasing {}", t.name, phrasing));
  return phrasing >= t.train_count;
}

std::optional<Kind> output_kind(TaskId id, Kind in) {
  using K = Kind;
  auto words = [&](std::initializer_list<Kind> ok) {
    return std::find(ok.begin(), ok.end(), in) != ok.end();
  };
  switch (id) {
    case TaskId::kReverse:
    case TaskId::kFirst:
    case TaskId::kLast:
      if (words({K::kEnglish, K::kForeign, K::kUpper, K::kNumbers})) return in;
      return std::nullopt;
    case TaskId::kUpper:
      if (words({K::kEnglish, K::kForeign})) return K::kUpper;
      return std::nullopt;
    case TaskId::kSort:
      if (words({K::kEnglish, K::kForeign, K::kUpper})) return in;
      return std::nullopt;
    case TaskId::kCount:
      if (words({K::kEnglish, K::kForeign, K::kUpper, K::kNumbers})) return K::kNumbers;
      return std::nullopt;
    case TaskId::kSum:
    case TaskId::kMax:
      if (in == K::kNumbers) return K::kNumbers;
      return std::nullopt;
    case TaskId::kLookup:
      if (in == K::kFacts) return K::kEnglish;
      return std::nullopt;
    case TaskId::kToVellan:
      if (in == K::kEnglish) return K::kForeign;
      return std::nullopt;
    case TaskId::kToEnglish:
      if (in == K::kForeign) return K::kEnglish;
      return std::nullopt;
    case TaskId::kRepeat:
      return in;
    default: {
      const TaskInfo& t = task_info(id);
      std::optional<Kind> k = in;
      for (TaskId part : t.parts) {
        if (!k) break;
        k = output_kind(part, *k);
      }
      return k;
    }
  }
}

std::string apply_task(TaskId id, std::string_view input) {
  const TaskInfo& info = task_info(id);
  std::optional<Kind> kind = classify_text(input);
  if (!kind || !accepts(id, *kind))
    throw Error(fmt::format("synth: task {} does not accept the input '{}' ({})", info.name, input,
                            kind ? kind_name(*kind) : "not a text of the world"));
  if (is_compound(id)) {
    std::string text(input);
    for (TaskId part : info.parts) text = apply_task(part, text);
    return text;
  }
  std::vector<std::string> w = words_of(input);
  switch (id) {
    case TaskId::kReverse:
      std::reverse(w.begin(), w.end());
      return join_words(w);
    case TaskId::kUpper:
      for (std::string& s : w) s = to_upper_ascii(s);
      return join_words(w);
    case TaskId::kSort:
      // Byte order: for one case of ASCII letters this is alphabetical order.
      std::sort(w.begin(), w.end());
      return join_words(w);
    case TaskId::kCount:
      return std::to_string(w.size());
    case TaskId::kFirst:
      return w.front();
    case TaskId::kLast:
      return w.back();
    case TaskId::kSum: {
      int sum = 0;
      for (const std::string& s : w) sum += to_int(s);
      if (sum > kMaxNumber)
        throw Error(fmt::format("synth: sum {} of '{}' is above {}", sum, input, kMaxNumber));
      return std::to_string(sum);
    }
    case TaskId::kMax: {
      int best = 0;
      for (const std::string& s : w) best = std::max(best, to_int(s));
      return std::to_string(best);
    }
    case TaskId::kLookup: {
      Facts f = *parse_facts(input);
      for (const auto& [k, v] : f.pairs)
        if (k == f.question) return v;
      break;  // unreachable: parse_facts checked that the question is a key
    }
    case TaskId::kToVellan:
      for (std::string& s : w) s = *to_vellan(s);
      return join_words(w);
    case TaskId::kToEnglish:
      for (std::string& s : w) s = *to_english(s);
      return join_words(w);
    case TaskId::kRepeat:
      return join_words(w);
    default:
      break;
  }
  throw Error(fmt::format("synth: task {} has no implementation", info.name));
}

namespace {
std::vector<std::string> distinct_words(const std::vector<std::string>& pool, int64_t n, Rng& rng) {
  std::vector<std::string> shuffled = pool;
  rng.shuffle(shuffled);
  shuffled.resize(static_cast<size_t>(n));
  return shuffled;
}
}  // namespace

void InputShape::validate() const {
  auto bad = [](const char* field, const std::string& why) {
    throw Error(fmt::format("synth input shape: {}: {}", field, why));
  };
  const int words = static_cast<int>(english_words().size());
  if (lexicon < 0 || lexicon > words)
    bad("lexicon", fmt::format("{} is not in 0..{} (0: every word)", lexicon, words));
  if (min_words < 1 || min_words > max_words)
    bad("min_words", fmt::format("{} is not in 1..max_words ({})", min_words, max_words));
  if (max_words > (lexicon == 0 ? words : lexicon))
    bad("max_words", fmt::format("{} distinct words need a lexicon of at least {} (it has {})",
                                 max_words, max_words, lexicon == 0 ? words : lexicon));
  if (min_numbers < 1 || min_numbers > max_numbers)
    bad("min_numbers", fmt::format("{} is not in 1..max_numbers ({})", min_numbers, max_numbers));
  if (max_number < 1 || static_cast<int64_t>(max_number) * max_numbers > kMaxNumber)
    bad("max_number", fmt::format("max_numbers x max_number = {} x {} must be at most {} (sums "
                                  "stay numbers of the world)",
                                  max_numbers, max_number, kMaxNumber));
  const int keys = static_cast<int>(fact_keys().size());
  if (min_facts < 1 || min_facts > max_facts || max_facts > keys)
    bad("min_facts", fmt::format("{}..{} is not a range within 1..{}", min_facts, max_facts, keys));
}

namespace {
const std::vector<std::string>& english_pool(int lexicon) {
  static const std::vector<std::string>& all = english_words();
  if (lexicon == 0 || lexicon == static_cast<int>(all.size())) return all;
  thread_local std::map<int, std::vector<std::string>> pools;
  auto [it, added] = pools.try_emplace(lexicon);
  if (added) it->second.assign(all.begin(), all.begin() + lexicon);
  return it->second;
}
const std::vector<std::string>& vellan_pool(int lexicon) {
  if (lexicon == 0 || lexicon == static_cast<int>(english_words().size())) return vellan_words();
  thread_local std::map<int, std::vector<std::string>> pools;
  auto [it, added] = pools.try_emplace(lexicon);
  if (added)
    for (const std::string& w : english_pool(lexicon)) it->second.push_back(*to_vellan(w));
  return it->second;
}
}  // namespace

std::string random_input(Kind kind, Rng& rng, const InputShape& shape) {
  switch (kind) {
    case Kind::kEnglish:
      return join_words(distinct_words(english_pool(shape.lexicon),
                                       rng.between(shape.min_words, shape.max_words), rng));
    case Kind::kForeign:
      return join_words(distinct_words(vellan_pool(shape.lexicon),
                                       rng.between(shape.min_words, shape.max_words), rng));
    case Kind::kNumbers: {
      std::vector<std::string> w;
      int64_t n = rng.between(shape.min_numbers, shape.max_numbers);
      for (int64_t i = 0; i < n; ++i) w.push_back(std::to_string(rng.between(0, shape.max_number)));
      return join_words(w);
    }
    case Kind::kFacts: {
      int64_t n = rng.between(shape.min_facts, shape.max_facts);
      std::vector<std::string> keys = distinct_words(fact_keys(), n, rng);
      Facts f;
      for (const std::string& k : keys) f.pairs.emplace_back(k, rng.pick(fact_values()));
      f.question = rng.pick(keys);
      return render_facts(f);
    }
    case Kind::kUpper:
      break;
  }
  throw Error(fmt::format("synth: no inputs are generated of kind {}", kind_name(kind)));
}

std::string random_input_for(TaskId id, Rng& rng, const InputShape& shape) {
  std::vector<Kind> ok;
  for (Kind k : kInputKinds)
    if (accepts(id, k)) ok.push_back(k);
  return random_input(rng.pick(ok), rng, shape);
}

bool may_follow(TaskId prev, TaskId next) {
  if (prev == next) return false;
  bool translations = (prev == TaskId::kToVellan && next == TaskId::kToEnglish) ||
                      (prev == TaskId::kToEnglish && next == TaskId::kToVellan);
  return !translations;
}

const std::vector<std::pair<TaskId, TaskId>>& held_out_pairs() {
  using T = TaskId;
  static const std::vector<std::pair<TaskId, TaskId>> pairs = {
      {T::kUpper, T::kReverse},   {T::kToVellan, T::kSort}, {T::kLookup, T::kUpper},
      {T::kToEnglish, T::kFirst}, {T::kSort, T::kLast},     {T::kReverse, T::kMax},
      {T::kRepeat, T::kSum},      {T::kLast, T::kToVellan},
  };
  return pairs;
}

bool is_held_out_pair(TaskId a, TaskId b) {
  for (const auto& [x, y] : held_out_pairs())
    if (x == a && y == b) return true;
  return false;
}

}  // namespace seqit::synth
