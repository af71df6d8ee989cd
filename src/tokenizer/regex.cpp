#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "util/error.h"

namespace seqit::tokenizer {

namespace {
// Unicode White_Space, the set Oniguruma's \s matches in HF tokenizers' patterns.
constexpr std::string_view kWhiteSpaceMembers =
    "\\t\\n\\x0B\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// One match-data block and one JIT stack per thread, shared by every Regex: PCRE2 match data is
// not thread-safe, and allocating it per call would dominate the cost of short matches.
struct ThreadMatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  ThreadMatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~ThreadMatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};
ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}
}  // namespace

std::string translate_oniguruma_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      if (e == 's') {
        if (in_class)
          out.append(kWhiteSpaceMembers);
        else
          out.append("[").append(kWhiteSpaceMembers).append("]");
        ++i;
        continue;
      }
      if (e == 'S' && !in_class) {
        out.append("[^").append(kWhiteSpaceMembers).append("]");
        ++i;
        continue;
      }
      // \S inside a class cannot be expressed as a member list; PCRE2's own \S is used there.
      out.push_back(c);
      out.push_back(e);
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

Regex::Regex(std::string_view pattern, const std::string& where)
    : pattern_(translate_oniguruma_pattern(pattern)), where_(where) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    throw Error("regular expression '" + std::string(pattern) + "' in " + where +
                " does not compile: " + reinterpret_cast<const char*>(message) + " (at offset " +
                std::to_string(error_offset) + ")");
  }
  // JIT is an accelerator only: when it is unavailable the interpreter gives identical results.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool Regex::next_match(std::string_view text, size_t from, size_t* begin, size_t* end) const {
  ThreadMatchState& state = thread_state();
  int rc = pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(text.data()),
                       text.size(), from, PCRE2_NO_UTF_CHECK, state.data, state.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0 && rc != 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof message);
    throw Error("regular expression of " + where_ +
                " failed while matching: " + reinterpret_cast<const char*>(message));
  }
  PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
  *begin = ovector[0];
  *end = ovector[1];
  return true;
}

}  // namespace seqit::tokenizer
