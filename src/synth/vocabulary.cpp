#include "synth/vocabulary.h"

#include <algorithm>
#include <set>

#include "synth/chain.h"
#include "synth/lexicon.h"
#include "synth/task.h"

namespace seqit::synth {

const std::vector<std::string>& world_vocabulary() {
  static const std::vector<std::string> vocabulary = [] {
    std::set<std::string> v;
    auto add = [&](const std::string& text) {
      for (std::string& t : split_world_tokens(text)) v.insert(std::move(t));
    };
    // Instructions: every phrasing in every position of every connective, by rendering chains of
    // one phrasing repeated, so that capitalisation comes from the renderer itself.
    for (TaskId id : all_tasks()) {
      const TaskInfo& info = task_info(id);
      for (size_t k = 0; k < info.phrasings.size(); ++k) {
        for (Connective c : kAllConnectives) {
          for (int n = 1; n <= kMaxEvalSteps; ++n) {
            Chain chain;
            chain.steps.assign(static_cast<size_t>(n), Step{id, static_cast<int>(k)});
            chain.connective = c;
            add(render_instruction(chain));
          }
        }
      }
    }
    // Inputs and outputs.
    for (const std::string& w : english_words()) {
      v.insert(w);
      v.insert(to_upper_ascii(w));
    }
    for (const std::string& w : vellan_words()) {
      v.insert(w);
      v.insert(to_upper_ascii(w));
    }
    for (int i = 0; i <= kMaxNumber; ++i) v.insert(std::to_string(i));
    for (const char* mark : {",", ".", ":", "?"}) v.insert(mark);
    // Responses.
    v.insert("Step");
    v.insert("Answer");
    v.insert("\n");
    return std::vector<std::string>(v.begin(), v.end());
  }();
  return vocabulary;
}

}  // namespace seqit::synth
