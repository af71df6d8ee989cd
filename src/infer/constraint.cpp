#include "infer/constraint.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <cctype>
#include <deque>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "infer/text_stream.h"
#include "util/error.h"

namespace seqit::infer {

// ---- token trie
// -----------------------------------------------------------------------------------

TokenTrie::TokenTrie(const tokenizer::Tokenizer& tokenizer) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id++;
  const size_t vocab = tokenizer.vocab_size();
  bytes_.resize(vocab);
  nodes_.emplace_back();
  std::bitset<256> singles;
  for (size_t i = 0; i < vocab; ++i) {
    const auto id = static_cast<TokenId>(i);
    if (tokenizer.is_special(id)) continue;
    std::string b = tokenizer.token_bytes(id);
    if (b.empty()) continue;
    if (b.size() == 1) singles.set(static_cast<uint8_t>(b[0]));
    int32_t node = 0;
    for (char c : b) {
      const auto byte = static_cast<uint8_t>(c);
      auto& kids = nodes_[static_cast<size_t>(node)].children;
      auto it = std::lower_bound(kids.begin(), kids.end(), byte,
                                 [](const auto& kid, uint8_t v) { return kid.first < v; });
      if (it != kids.end() && it->first == byte) {
        node = it->second;
      } else {
        const auto child = static_cast<int32_t>(nodes_.size());
        kids.insert(it, {byte, child});
        nodes_.emplace_back();  // invalidates `kids`: not used after this
        node = child;
      }
    }
    nodes_[static_cast<size_t>(node)].tokens.push_back(id);
    if (drops_leading_space(tokenizer, id)) space_dropping_.push_back(id);
    bytes_[i] = std::move(b);
  }
  every_byte_ = singles.all();
}

// ---- regular expressions: parse to a tree
// ---------------------------------------------------------

namespace {

using ByteSet = std::bitset<256>;

// Limits that keep a hostile pattern or schema (a server compiles what clients send) to well under
// a second and a few hundred MB: NFA states, DFA states, the NFA states summed over the DFA's
// subsets (the work of the subset construction), group nesting, and a schema's regex length.
constexpr size_t kMaxNfaStates = 250'000;
constexpr size_t kMaxDfaStates = 60'000;
constexpr size_t kMaxSubsetWork = 20'000'000;
constexpr int kMaxNesting = 200;
constexpr size_t kMaxSchemaRegex = 1 << 20;

struct Node {
  enum Kind { kSet, kConcat, kAlt, kRepeat } kind = kConcat;
  ByteSet set;
  std::vector<Node> kids;
  int min = 0, max = 0;  // kRepeat; max -1 = unbounded
};

Node set_node(const ByteSet& s) {
  Node n;
  n.kind = Node::kSet;
  n.set = s;
  return n;
}
Node byte_node(uint8_t b) {
  ByteSet s;
  s.set(b);
  return set_node(s);
}
Node range_node(int lo, int hi) {
  ByteSet s;
  for (int b = lo; b <= hi; ++b) s.set(static_cast<size_t>(b));
  return set_node(s);
}
Node concat(std::vector<Node> kids) {
  Node n;
  n.kind = Node::kConcat;
  n.kids = std::move(kids);
  return n;
}
Node alt(std::vector<Node> kids) {
  Node n;
  n.kind = Node::kAlt;
  n.kids = std::move(kids);
  return n;
}
Node repeat(Node kid, int min, int max) {
  Node n;
  n.kind = Node::kRepeat;
  n.min = min;
  n.max = max;
  n.kids.push_back(std::move(kid));
  return n;
}

// Every well-formed non-ASCII UTF-8 character (no overlongs, no surrogates, <= U+10FFFF).
Node non_ascii_char() {
  const Node cont = range_node(0x80, 0xbf);
  return alt({concat({range_node(0xc2, 0xdf), cont}),
              concat({byte_node(0xe0), range_node(0xa0, 0xbf), cont}),
              concat({range_node(0xe1, 0xec), cont, cont}),
              concat({range_node(0xee, 0xef), cont, cont}),
              concat({byte_node(0xed), range_node(0x80, 0x9f), cont}),
              concat({byte_node(0xf0), range_node(0x90, 0xbf), cont, cont}),
              concat({range_node(0xf1, 0xf3), cont, cont, cont}),
              concat({byte_node(0xf4), range_node(0x80, 0x8f), cont, cont})});
}

// An ASCII set, or its complement within ASCII plus every non-ASCII character.
Node class_node(const ByteSet& ascii, bool negated) {
  if (!negated) return set_node(ascii);
  ByteSet s;
  for (int b = 0; b < 128; ++b) s.set(static_cast<size_t>(b), !ascii.test(static_cast<size_t>(b)));
  return alt({set_node(s), non_ascii_char()});
}

ByteSet named_class(char c) {
  ByteSet s;
  auto range = [&](int lo, int hi) {
    for (int b = lo; b <= hi; ++b) s.set(static_cast<size_t>(b));
  };
  switch (c) {
    case 'd':
      range('0', '9');
      break;
    case 'w':
      range('0', '9'), range('a', 'z'), range('A', 'Z'), s.set('_');
      break;
    case 's':
      for (char w : {' ', '\t', '\n', '\r', '\f', '\v'}) s.set(static_cast<uint8_t>(w));
      break;
    default:
      break;
  }
  return s;
}

// Appends the UTF-8 encoding of code point `cp`.
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

class Parser {
 public:
  explicit Parser(std::string_view p) : p_(p) {}

  Node parse() {
    if (peek('^')) ++i_;
    Node n = alternation();
    if (i_ < p_.size()) fail(p_[i_] == ')' ? "unbalanced ')'" : "unexpected character");
    return n;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(fmt::format("regex: {} at offset {} of '{}'", what, i_, p_));
  }
  bool peek(char c) const { return i_ < p_.size() && p_[i_] == c; }
  bool at_end_anchor() const { return peek('$') && i_ + 1 == p_.size(); }

  Node alternation() {
    std::vector<Node> options{sequence()};
    while (peek('|')) {
      ++i_;
      options.push_back(sequence());
    }
    return options.size() == 1 ? std::move(options[0]) : alt(std::move(options));
  }

  Node sequence() {
    std::vector<Node> items;
    while (i_ < p_.size() && !peek('|') && !peek(')')) {
      if (at_end_anchor()) {
        ++i_;
        break;
      }
      Node a = atom();
      items.push_back(quantified(std::move(a)));
    }
    return concat(std::move(items));
  }

  int number() {
    const size_t start = i_;
    int v = 0;
    while (i_ < p_.size() && p_[i_] >= '0' && p_[i_] <= '9') {
      v = v * 10 + (p_[i_++] - '0');
      if (v > 1000) fail("repeat count above 1000");
    }
    if (i_ == start) fail("expected a number");
    return v;
  }

  Node quantified(Node a) {
    while (i_ < p_.size()) {
      const char c = p_[i_];
      if (c == '*' || c == '+' || c == '?') {
        ++i_;
        a = repeat(std::move(a), c == '+' ? 1 : 0, c == '?' ? 1 : -1);
      } else if (c == '{') {
        ++i_;
        const int lo = number();
        int hi = lo;
        if (peek(',')) {
          ++i_;
          hi = peek('}') ? -1 : number();
        }
        if (!peek('}')) fail("expected '}'");
        ++i_;
        if (hi != -1 && hi < lo) fail("{m,n} with n < m");
        a = repeat(std::move(a), lo, hi);
      } else {
        break;
      }
      if (peek('?') || peek('+')) fail("lazy and possessive quantifiers are not supported");
    }
    return a;
  }

  uint8_t hex_digit() {
    if (i_ >= p_.size()) fail("truncated escape");
    const char c = p_[i_++];
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(c - 'A' + 10);
    fail("expected a hex digit");
  }

  // An escape after '\': a named class (kind set, `negated`), or literal bytes.
  struct Escape {
    bool is_class = false, negated = false;
    ByteSet set;
    std::string bytes;
  };
  Escape escape() {
    if (i_ >= p_.size()) fail("trailing backslash");
    const char c = p_[i_++];
    Escape e;
    static constexpr std::pair<char, char> kControls[] = {
        {'n', '\n'}, {'t', '\t'}, {'r', '\r'}, {'f', '\f'}, {'v', '\v'}};
    for (const auto& [letter, byte] : kControls) {
      if (c == letter) {
        e.bytes = std::string(1, byte);
        return e;
      }
    }
    switch (c) {
      case 'd':
      case 'w':
      case 's':
      case 'D':
      case 'W':
      case 'S':
        e.is_class = true;
        e.negated = c < 'a';
        e.set = named_class(static_cast<char>(c | 0x20));
        return e;
      case 'x': {
        const int hi = hex_digit(), lo = hex_digit();
        e.bytes = std::string(1, static_cast<char>(hi * 16 + lo));
        return e;
      }
      case 'u': {
        uint32_t cp = 0;
        for (int k = 0; k < 4; ++k) cp = cp * 16 + hex_digit();
        if (cp >= 0xd800 && cp <= 0xdfff) fail("\\u escape of a surrogate");
        append_utf8(e.bytes, cp);
        return e;
      }
      default:
        if ((c >= '0' && c <= '9') || c == 'b' || c == 'B' || c == 'k')
          fail(std::string("\\") + c + " (backreferences and word boundaries) is not supported");
        if (static_cast<unsigned char>(c) >= 0x80 || std::isalpha(static_cast<unsigned char>(c)))
          fail(std::string("unknown escape \\") + c);
        e.bytes = std::string(1, c);
        return e;
    }
  }

  // One UTF-8 character starting at i_ (the lead byte already seen), as its bytes.
  std::string utf8_char() {
    const auto lead = static_cast<uint8_t>(p_[i_]);
    const size_t len = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (i_ + len > p_.size()) fail("truncated UTF-8 character");
    std::string s(p_.substr(i_, len));
    i_ += len;
    return s;
  }

  static Node literal(const std::string& bytes) {
    if (bytes.size() == 1) return byte_node(static_cast<uint8_t>(bytes[0]));
    std::vector<Node> kids;
    for (char c : bytes) kids.push_back(byte_node(static_cast<uint8_t>(c)));
    return concat(std::move(kids));
  }

  Node char_class() {
    // after '['
    bool negated = false;
    if (peek('^')) {
      negated = true;
      ++i_;
    }
    ByteSet ascii;
    bool first = true;
    while (true) {
      if (i_ >= p_.size()) fail("unterminated [");
      if (p_[i_] == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      // One member: a byte (possibly a range start) or a named class.
      auto member = [&](bool* is_class, ByteSet* cls) -> int {
        *is_class = false;
        if (p_[i_] == '\\') {
          ++i_;
          Escape e = escape();
          if (e.is_class) {
            if (e.negated) fail("negated classes inside [...] are not supported");
            *is_class = true;
            *cls = e.set;
            return -1;
          }
          if (e.bytes.size() != 1 || static_cast<uint8_t>(e.bytes[0]) >= 0x80)
            fail("non-ASCII characters inside [...] are not supported");
          return static_cast<uint8_t>(e.bytes[0]);
        }
        const auto b = static_cast<uint8_t>(p_[i_]);
        if (b >= 0x80) fail("non-ASCII characters inside [...] are not supported");
        ++i_;
        return b;
      };
      bool is_class = false;
      ByteSet cls;
      const int lo = member(&is_class, &cls);
      if (is_class) {
        ascii |= cls;
        continue;
      }
      if (peek('-') && i_ + 1 < p_.size() && p_[i_ + 1] != ']') {
        ++i_;
        const int hi = member(&is_class, &cls);
        if (is_class) fail("a range cannot end in a class");
        if (hi < lo) fail("range out of order");
        for (int b = lo; b <= hi; ++b) ascii.set(static_cast<size_t>(b));
      } else {
        ascii.set(static_cast<size_t>(lo));
      }
    }
    return class_node(ascii, negated);
  }

  Node atom() {
    const char c = p_[i_];
    switch (c) {
      case '(': {
        if (++depth_ > kMaxNesting) fail("groups nested deeper than 200");
        ++i_;
        if (peek('?')) {
          if (i_ + 1 < p_.size() && p_[i_ + 1] == ':') {
            i_ += 2;
          } else {
            fail("lookaround and named groups are not supported");
          }
        }
        Node inner = alternation();
        if (!peek(')')) fail("missing ')'");
        ++i_;
        --depth_;
        return inner;
      }
      case '[':
        ++i_;
        return char_class();
      case '.': {
        ++i_;
        ByteSet newline;
        newline.set('\n');
        return class_node(newline, true);
      }
      case '\\': {
        ++i_;
        Escape e = escape();
        if (e.is_class) return class_node(e.set, e.negated);
        return literal(e.bytes);
      }
      case '*':
      case '+':
      case '?':
      case '{':
        fail("nothing to repeat");
      case '^':
        fail("'^' is only supported at the start");
      case '$':
        fail("'$' is only supported at the end");
      case ']':
      case '}':
        fail(std::string("unescaped '") + c + "'");
      default:
        if (static_cast<uint8_t>(c) >= 0x80) return literal(utf8_char());
        ++i_;
        return byte_node(static_cast<uint8_t>(c));
    }
  }

  std::string_view p_;
  size_t i_ = 0;
  int depth_ = 0;
};

// ---- tree -> NFA (Thompson) -> DFA (subset construction)
// ------------------------------------------

struct Nfa {
  struct State {
    int32_t cls = -1, next = -1;  // byte class transition
    std::vector<int32_t> eps;
  };
  std::vector<State> states;
  std::vector<ByteSet> classes;
  const std::string* pattern = nullptr;

  int32_t add() {
    if (states.size() >= kMaxNfaStates)
      throw Error(fmt::format("regex: the pattern is too large to compile ('{}...')",
                              pattern->substr(0, 80)));
    states.emplace_back();
    return static_cast<int32_t>(states.size() - 1);
  }
  struct Frag {
    int32_t start, end;
  };
  Frag build(const Node& n) {
    switch (n.kind) {
      case Node::kSet: {
        const int32_t a = add(), b = add();
        classes.push_back(n.set);
        states[static_cast<size_t>(a)].cls = static_cast<int32_t>(classes.size() - 1);
        states[static_cast<size_t>(a)].next = b;
        return {a, b};
      }
      case Node::kConcat: {
        const int32_t a = add();
        Frag f{a, a};
        for (const Node& k : n.kids) {
          const Frag g = build(k);
          states[static_cast<size_t>(f.end)].eps.push_back(g.start);
          f.end = g.end;
        }
        return f;
      }
      case Node::kAlt: {
        const int32_t a = add(), b = add();
        for (const Node& k : n.kids) {
          const Frag g = build(k);
          states[static_cast<size_t>(a)].eps.push_back(g.start);
          states[static_cast<size_t>(g.end)].eps.push_back(b);
        }
        return {a, b};
      }
      case Node::kRepeat: {
        const int32_t a = add();
        Frag f{a, a};
        auto append = [&](Frag g) {
          states[static_cast<size_t>(f.end)].eps.push_back(g.start);
          f.end = g.end;
        };
        for (int k = 0; k < n.min; ++k) append(build(n.kids[0]));
        if (n.max < 0) {
          const int32_t loop = add();
          const Frag g = build(n.kids[0]);
          states[static_cast<size_t>(loop)].eps.push_back(g.start);
          states[static_cast<size_t>(g.end)].eps.push_back(loop);
          append({loop, loop});
        } else {
          // Optional copies, each skippable to the end.
          const int32_t end = add();
          for (int k = n.min; k < n.max; ++k) {
            states[static_cast<size_t>(f.end)].eps.push_back(end);
            append(build(n.kids[0]));
          }
          append({end, end});
        }
        return f;
      }
    }
    return {add(), add()};
  }
};

}  // namespace

std::shared_ptr<const Constraint> Constraint::compile(std::string pattern,
                                                      std::string description) {
  const Node tree = Parser(pattern).parse();
  Nfa nfa;
  nfa.pattern = &pattern;
  const Nfa::Frag whole = nfa.build(tree);

  std::shared_ptr<Constraint> c(new Constraint());
  c->pattern_ = std::move(pattern);
  c->description_ = std::move(description);

  // Epsilon closure of a set of NFA states, sorted.
  std::vector<uint32_t> mark(nfa.states.size(), 0);
  uint32_t epoch = 0;
  auto closure = [&](std::vector<int32_t> seeds) {
    ++epoch;
    std::vector<int32_t> out, stack = std::move(seeds);
    while (!stack.empty()) {
      const int32_t s = stack.back();
      stack.pop_back();
      if (mark[static_cast<size_t>(s)] == epoch) continue;
      mark[static_cast<size_t>(s)] = epoch;
      const auto& st = nfa.states[static_cast<size_t>(s)];
      if (st.cls >= 0) out.push_back(s);  // only states with a byte move matter for transitions
      if (s == whole.end) out.push_back(s);
      for (int32_t e : st.eps) stack.push_back(e);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  };
  std::map<std::vector<int32_t>, int32_t> ids;
  std::vector<std::vector<int32_t>> sets;
  auto intern = [&](std::vector<int32_t> set) -> int32_t {
    if (set.empty()) return kDead;
    auto [it, inserted] = ids.emplace(set, static_cast<int32_t>(sets.size()));
    if (inserted) {
      if (sets.size() >= kMaxDfaStates) {
        throw Error(fmt::format(
            "constraint: the automaton of '{}{}' has more than {} states; simplify it (fewer "
            "nested or optional parts, smaller repeat counts)",
            c->pattern_.substr(0, 80), c->pattern_.size() > 80 ? "..." : "", kMaxDfaStates));
      }
      sets.push_back(std::move(set));
    }
    return it->second;
  };
  size_t work = 0;
  intern(closure({whole.start}));
  // Bytes that every class of the pattern treats alike form one group: the subset construction
  // works per group (a few dozen, not 256) and copies the result to the group's bytes.
  std::vector<int32_t> group_of(256);
  std::vector<int32_t> group_byte;  // a representative byte of each group
  {
    std::vector<ByteSet> distinct;
    for (const ByteSet& cls : nfa.classes)
      if (std::find(distinct.begin(), distinct.end(), cls) == distinct.end())
        distinct.push_back(cls);
    std::map<std::vector<bool>, int32_t> ids;
    for (size_t b = 0; b < 256; ++b) {
      std::vector<bool> signature(distinct.size());
      for (size_t k = 0; k < distinct.size(); ++k) signature[k] = distinct[k].test(b);
      auto [it, inserted] =
          ids.emplace(std::move(signature), static_cast<int32_t>(group_byte.size()));
      if (inserted) group_byte.push_back(static_cast<int32_t>(b));
      group_of[b] = it->second;
    }
  }
  const size_t groups = group_byte.size();
  std::vector<std::vector<int32_t>> moves(groups);
  std::vector<int32_t> group_target(groups);
  for (size_t d = 0; d < sets.size(); ++d) {
    work += sets[d].size();
    if (work > kMaxSubsetWork) {
      throw Error(fmt::format(
          "constraint: '{}{}' is too complex to compile (its automaton's subsets pass {} NFA "
          "states); simplify it",
          c->pattern_.substr(0, 80), c->pattern_.size() > 80 ? "..." : "", kMaxSubsetWork));
    }
    for (auto& m : moves) m.clear();
    for (int32_t s : sets[d]) {
      const auto& st = nfa.states[static_cast<size_t>(s)];
      if (st.cls < 0) continue;
      const ByteSet& cls = nfa.classes[static_cast<size_t>(st.cls)];
      for (size_t g = 0; g < groups; ++g)
        if (cls.test(static_cast<size_t>(group_byte[g]))) moves[g].push_back(st.next);
    }
    c->transitions_.resize((d + 1) * 256, kDead);
    c->accepting_.push_back(std::binary_search(sets[d].begin(), sets[d].end(), whole.end));
    for (size_t g = 0; g < groups; ++g)
      group_target[g] = moves[g].empty() ? kDead : intern(closure(moves[g]));
    for (size_t b = 0; b < 256; ++b)
      c->transitions_[d * 256 + b] = group_target[static_cast<size_t>(group_of[b])];
  }
  const size_t n = sets.size();
  c->transitions_.resize(n * 256, kDead);
  // Fewest bytes to acceptance: breadth-first from the accepting states over reversed edges.
  std::vector<std::vector<int32_t>> reverse(n);
  for (size_t d = 0; d < n; ++d)
    for (size_t b = 0; b < 256; ++b) {
      const int32_t t = c->transitions_[d * 256 + b];
      if (t != kDead) reverse[static_cast<size_t>(t)].push_back(static_cast<int32_t>(d));
    }
  constexpr int32_t kFar = std::numeric_limits<int32_t>::max();
  c->distance_.assign(n, kFar);
  std::deque<int32_t> queue;
  for (size_t d = 0; d < n; ++d)
    if (c->accepting_[d]) c->distance_[d] = 0, queue.push_back(static_cast<int32_t>(d));
  while (!queue.empty()) {
    const int32_t d = queue.front();
    queue.pop_front();
    for (int32_t p : reverse[static_cast<size_t>(d)]) {
      if (c->distance_[static_cast<size_t>(p)] != kFar) continue;
      c->distance_[static_cast<size_t>(p)] = c->distance_[static_cast<size_t>(d)] + 1;
      queue.push_back(p);
    }
  }
  if (c->distance_[0] == kFar)
    throw Error(fmt::format("constraint: '{}' matches nothing", c->pattern_.substr(0, 80)));
  return c;
}

int32_t Constraint::advance(int32_t state, std::string_view bytes) const {
  for (char ch : bytes) {
    if (state == kDead) return kDead;
    state = next(state, static_cast<uint8_t>(ch));
  }
  return state;
}

bool Constraint::complete(int32_t state) const {
  if (!accepting(state)) return false;
  for (int b = 0; b < 256; ++b)
    if (next(state, static_cast<uint8_t>(b)) != kDead) return false;
  return true;
}

bool Constraint::matches(std::string_view text) const {
  const int32_t s = advance(start(), text);
  return s != kDead && accepting(s);
}

const Constraint::Mask& Constraint::mask(const TokenTrie& trie, int32_t state) const {
  std::lock_guard lock(mutex_);
  // Tries come and go with engines: keep the masks of the 8 most recent (highest ids).
  if (!masks_.count(trie.id()) && masks_.size() >= 8) masks_.erase(masks_.begin());
  auto& per_state = masks_[trie.id()];
  if (per_state.empty()) per_state.resize(states());
  auto& slot = per_state[static_cast<size_t>(state)];
  if (slot) return *slot;
  auto m = std::make_unique<Mask>();
  std::vector<Allowed>* list = &m->allowed;
  // Depth-first over the trie, carrying the automaton state; a dead state prunes the subtree.
  const auto& nodes = trie.nodes();
  std::vector<std::pair<int32_t, int32_t>> stack{{0, state}};
  while (!stack.empty()) {
    const auto [node, s] = stack.back();
    stack.pop_back();
    for (const auto& [byte, child] : nodes[static_cast<size_t>(node)].children) {
      const int32_t t = next(s, byte);
      if (t == kDead) continue;
      for (TokenId id : nodes[static_cast<size_t>(child)].tokens) list->push_back({id, t});
      stack.push_back({child, t});
    }
  }
  std::sort(list->begin(), list->end(),
            [](const Allowed& a, const Allowed& b) { return a.token < b.token; });
  for (const Allowed& a : *list) m->max_distance = std::max(m->max_distance, distance(a.next));
  const size_t vocab = trie.vocab_size();
  if (list->size() * 2 > vocab) {
    m->has_excluded = true;
    size_t k = 0;
    for (size_t id = 0; id < vocab; ++id) {
      if (k < list->size() && static_cast<size_t>((*list)[k].token) == id) {
        ++k;
      } else {
        m->excluded.push_back(static_cast<TokenId>(id));
      }
    }
  }
  slot = std::move(m);
  return *slot;
}

// ---- constructors
// --------------------------------------------------------------------------------

std::string regex_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (std::string_view("\\.^$|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::shared_ptr<const Constraint> Constraint::regex(std::string_view pattern) {
  return compile(std::string(pattern), fmt::format("regex {}", pattern));
}

std::shared_ptr<const Constraint> Constraint::choice(const std::vector<std::string>& options) {
  if (options.empty()) throw Error("constraint: a choice needs at least one option");
  std::string pattern;
  for (const std::string& o : options) {
    if (o.empty()) throw Error("constraint: a choice option is empty");
    if (!pattern.empty()) pattern += '|';
    pattern += regex_escape(o);
  }
  return compile(std::move(pattern), fmt::format("choice of {}", options.size()));
}

namespace {

// A JSON string's content character: any UTF-8 character but '"', '\' and controls, or an escape
// (\u escapes of surrogates left out: a lone one is not valid JSON text for strict parsers).
const std::string kJsonChar =
    R"((?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})))";
const std::string kJsonString = "\"" + kJsonChar + "*\"";
// Numbers with bounded digit counts (finite, and what a judge or pipeline expects).
const std::string kJsonInteger = R"(-?(?:0|[1-9][0-9]{0,15}))";
const std::string kJsonNumber = kJsonInteger + R"((?:\.[0-9]{1,15})?(?:[eE][+-]?[0-9]{1,3})?)";

std::string json_value_regex(int depth) {
  std::string scalars = kJsonString + "|" + kJsonNumber + "|true|false|null";
  if (depth <= 0) return "(?:" + scalars + ")";
  const std::string v = json_value_regex(depth - 1);
  const std::string member = kJsonString + ":" + v;
  return "(?:" + scalars + "|\\{(?:" + member + "(?:," + member + ")*)?\\}|\\[(?:" + v + "(?:," +
         v + ")*)?\\])";
}

std::string json_object_regex(int depth) {
  const std::string v = json_value_regex(depth - 1);
  const std::string member = kJsonString + ":" + v;
  return "\\{(?:" + member + "(?:," + member + ")*)?\\}";
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const nlohmann::ordered_json& root) : root_(root) {}

  std::string value(const nlohmann::ordered_json& s, const std::string& path, int depth) {
    std::string out = value_unchecked(s, path, depth);
    if (out.size() > kMaxSchemaRegex) fail(path, "the schema is too large to compile");
    return out;
  }

 private:
  std::string value_unchecked(const nlohmann::ordered_json& s, const std::string& path, int depth) {
    if (depth > 32) fail(path, "nesting deeper than 32 (a recursive $ref?)");
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "the schema false admits nothing");
      return json_value_regex(2);
    }
    if (!s.is_object()) fail(path, "a schema must be an object");
    for (const char* k :
         {"format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
          "prefixItems", "uniqueItems", "patternProperties", "not", "allOf", "if", "contains",
          "minProperties", "maxProperties", "dependentRequired", "propertyNames"}) {
      if (s.contains(k)) fail(path, fmt::format("'{}' is not supported", k));
    }
    if (auto it = s.find("$ref"); it != s.end()) return value(resolve(*it, path), *it, depth + 1);
    if (auto it = s.find("const"); it != s.end()) return "(?:" + regex_escape(it->dump()) + ")";
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array() || it->empty()) fail(path + "/enum", "must be a non-empty list");
      std::string out;
      for (const auto& v : *it) out += (out.empty() ? "" : "|") + regex_escape(v.dump());
      return "(?:" + out + ")";
    }
    for (const char* k : {"anyOf", "oneOf"}) {
      if (auto it = s.find(k); it != s.end()) {
        if (!it->is_array() || it->empty()) fail(path + "/" + k, "must be a non-empty list");
        std::string out;
        for (size_t i = 0; i < it->size(); ++i)
          out += (i ? "|" : "") + value((*it)[i], fmt::format("{}/{}/{}", path, k, i), depth + 1);
        return "(?:" + out + ")";
      }
    }
    auto type_it = s.find("type");
    if (type_it == s.end()) {
      if (s.contains("properties")) return typed(s, "object", path, depth);
      if (s.contains("items")) return typed(s, "array", path, depth);
      return json_value_regex(2);
    }
    if (type_it->is_array()) {
      std::string out;
      for (const auto& t : *type_it) {
        if (!t.is_string()) fail(path + "/type", "must name types");
        out += (out.empty() ? "" : "|") + typed(s, t.get<std::string>(), path, depth);
      }
      if (out.empty()) fail(path + "/type", "is empty");
      return "(?:" + out + ")";
    }
    if (!type_it->is_string()) fail(path + "/type", "must be a string or a list");
    return typed(s, type_it->get<std::string>(), path, depth);
  }

  [[noreturn]] static void fail(const std::string& path, const std::string& what) {
    throw Error(fmt::format("JSON schema at {}: {}", path.empty() ? "/" : path, what));
  }

  const nlohmann::ordered_json& resolve(const nlohmann::ordered_json& ref,
                                        const std::string& path) {
    if (!ref.is_string()) fail(path + "/$ref", "must be a string");
    const std::string r = ref.get<std::string>();
    if (r == "#") return root_;
    if (r.rfind("#/", 0) != 0) fail(path + "/$ref", "only local references (#/...) are supported");
    try {
      return root_.at(nlohmann::ordered_json::json_pointer(r.substr(1)));
    } catch (const nlohmann::ordered_json::exception&) {
      fail(path + "/$ref", "'" + r + "' does not resolve");
    }
  }

  static int count(const nlohmann::ordered_json& s, const char* key, int fallback,
                   const std::string& path) {
    auto it = s.find(key);
    if (it == s.end()) return fallback;
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 1000)
      fail(path + "/" + key, "must be an integer from 0 to 1000");
    return it->get<int>();
  }

  std::string typed(const nlohmann::ordered_json& s, const std::string& type,
                    const std::string& path, int depth) {
    if (type == "string") {
      if (auto it = s.find("pattern"); it != s.end()) {
        if (!it->is_string()) fail(path + "/pattern", "must be a string");
        std::string p = it->get<std::string>();
        if (!p.empty() && p.front() == '^') p.erase(0, 1);
        if (!p.empty() && p.back() == '$' && (p.size() < 2 || p[p.size() - 2] != '\\'))
          p.pop_back();
        return "\"(?:" + p + ")\"";
      }
      const int lo = count(s, "minLength", 0, path), hi = count(s, "maxLength", -1, path);
      if (hi >= 0 && hi < lo) fail(path, "maxLength < minLength");
      return "\"" + kJsonChar + "{" + std::to_string(lo) + "," +
             (hi >= 0 ? std::to_string(hi) : "") + "}\"";
    }
    if (type == "integer") return kJsonInteger;
    if (type == "number") return kJsonNumber;
    if (type == "boolean") return "(?:true|false)";
    if (type == "null") return "null";
    if (type == "array") {
      const std::string item = s.contains("items")
                                   ? value(s.at("items"), path + "/items", depth + 1)
                                   : json_value_regex(2);
      const int lo = count(s, "minItems", 0, path), hi = count(s, "maxItems", -1, path);
      if (hi >= 0 && hi < lo) fail(path, "maxItems < minItems");
      if (hi == 0) return "\\[\\]";
      const std::string more = "(?:," + item + "){" + std::to_string(std::max(lo - 1, 0)) + "," +
                               (hi >= 0 ? std::to_string(hi - 1) : "") + "}";
      return lo == 0 ? "\\[(?:" + item + more + ")?\\]" : "\\[" + item + more + "\\]";
    }
    if (type == "object") {
      auto props = s.find("properties");
      if (props == s.end() || props->empty()) {
        const auto extra = s.find("additionalProperties");
        if (extra != s.end() && extra->is_boolean() && !extra->get<bool>()) return "\\{\\}";
        return json_object_regex(2);
      }
      if (!props->is_object()) fail(path + "/properties", "must be an object");
      if (auto extra = s.find("additionalProperties");
          extra != s.end() && !(extra->is_boolean() && !extra->get<bool>())) {
        fail(path + "/additionalProperties", "only false is supported (no extra keys are written)");
      }
      std::vector<std::string> required;
      if (auto r = s.find("required"); r != s.end()) {
        if (!r->is_array()) fail(path + "/required", "must be a list");
        for (const auto& k : *r) {
          if (!k.is_string() || !props->contains(k.get<std::string>()))
            fail(path + "/required", "names a property that is not defined: " + k.dump());
          required.push_back(k.get<std::string>());
        }
      }
      struct Prop {
        std::string regex;
        bool required;
      };
      std::vector<Prop> list;
      for (const auto& [key, sub] : props->items()) {
        const bool req = std::find(required.begin(), required.end(), key) != required.end();
        list.push_back({regex_escape(nlohmann::ordered_json(key).dump()) + ":" +
                            value(sub, path + "/properties/" + key, depth + 1),
                        req});
      }
      return "\\{" + members(list, 0, false) + "\\}";
    }
    fail(path + "/type", "unknown type '" + type + "'");
  }

  // Properties i.. in order; `comma`: one is already written (the next needs a comma).
  template <typename Props>
  std::string members(const Props& list, size_t i, bool comma) {
    if (i == list.size()) return "";
    const std::string here = (comma ? "," : "") + list[i].regex + members(list, i + 1, true);
    if (here.size() > kMaxSchemaRegex) fail("", "the schema is too large to compile");
    if (list[i].required) return here;
    std::string out = "(?:" + here + "|" + members(list, i + 1, comma) + ")";
    if (out.size() > kMaxSchemaRegex)
      fail("", "the schema is too large to compile (many optional properties?)");
    return out;
  }

  const nlohmann::ordered_json& root_;
};

}  // namespace

std::string any_json_object_regex(int depth) {
  return json_object_regex(depth);
}

std::string json_schema_regex(const nlohmann::ordered_json& schema) {
  SchemaCompiler compiler(schema);
  return compiler.value(schema, "", 0);
}

std::shared_ptr<const Constraint> Constraint::json_schema(const nlohmann::ordered_json& schema) {
  std::string pattern = json_schema_regex(schema);
  return compile(std::move(pattern), "JSON schema");
}

std::shared_ptr<const Constraint> Constraint::json_object(int depth) {
  if (depth < 1 || depth > 4) throw Error("constraint: JSON object depth must be 1 to 4");
  return compile(json_object_regex(depth), fmt::format("JSON object (depth {})", depth));
}

}  // namespace seqit::infer
