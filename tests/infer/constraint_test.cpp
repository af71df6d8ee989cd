// Constrained decoding: the regex automaton against std::regex as an independent oracle, JSON
// schemas against hand-written documents, the token masks against random walks (never a dead end),
// and generation with stories260K (a model that knows nothing of JSON): every seeded sample parses
// and validates, where unconstrained output does not.
#include "infer/constraint.h"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "infer/engine.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace seqit::infer;
using seqit::model::LlamaModel;
using seqit::testing::shared_data;

namespace {

struct Stories {
  std::unique_ptr<LlamaModel> model = LlamaModel::load(
      shared_data("models/stories260K/stories260K.bin"), {.pack_for_inference = true});
  std::unique_ptr<seqit::tokenizer::Tokenizer> tok =
      seqit::tokenizer::load_tokenizer(shared_data("models/stories260K/tok512.bin"));
};
Stories& stories() {
  static Stories s;
  return s;
}

// A judge-sized schema: ordered properties, an enum, an integer, a nested object with an optional
// property, an array with bounds, a string with escapes allowed.
const char* kJudgeSchema = R"({
  "type": "object",
  "properties": {
    "subtasks": {"type": "array", "items": {"type": "string", "maxLength": 12},
                 "minItems": 1, "maxItems": 3},
    "verdict": {"enum": ["yes", "no"]},
    "score": {"type": "integer"},
    "detail": {"type": "object",
               "properties": {"ok": {"type": "boolean"}, "note": {"type": ["string", "null"]}},
               "required": ["ok"], "additionalProperties": false}
  },
  "required": ["subtasks", "verdict", "score", "detail"],
  "additionalProperties": false
})";

// The judge schema's rules, checked on a parsed document by hand (independent of the regex).
bool valid_judge(const nlohmann::ordered_json& j, std::string* why) {
  auto no = [&](const std::string& w) {
    *why = w;
    return false;
  };
  if (!j.is_object()) return no("not an object");
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  if (keys != std::vector<std::string>{"subtasks", "verdict", "score", "detail"})
    return no("keys or their order");
  const auto& st = j["subtasks"];
  if (!st.is_array() || st.empty() || st.size() > 3) return no("subtasks size");
  for (const auto& s : st)
    if (!s.is_string()) return no("subtask type");
  if (j["verdict"] != "yes" && j["verdict"] != "no") return no("verdict");
  if (!j["score"].is_number_integer()) return no("score");
  const auto& d = j["detail"];
  if (!d.is_object() || !d.contains("ok") || !d["ok"].is_boolean()) return no("detail.ok");
  for (const auto& [k, v] : d.items()) {
    if (k != "ok" && k != "note") return no("detail key " + k);
    if (k == "note" && !v.is_string() && !v.is_null()) return no("detail.note");
  }
  return true;
}

}  // namespace

TEST(ConstraintRegex, AgreesWithStdRegexOnRandomStrings) {
  const std::vector<std::string> patterns = {"a|b",
                                             "(ab)*c",
                                             "[a-c]{2,4}",
                                             "x?y+z*",
                                             R"(\d{3}-\d{2})",
                                             "(?:fo|ba)+r?",
                                             "[^abc]+",
                                             "a{0,3}b{2,}",
                                             "(a|ab)(c|bcd)(d*)",
                                             R"(\w+\s\w+)",
                                             "[a-c0-2]*-[xyz]?",
                                             "(?:(a|b)c){1,2}d?",
                                             R"(\.\*[.]a)",
                                             "^ab+$",
                                             "(|a)b"};
  const std::string alphabet = "abcdxyz012- fro.*";
  std::mt19937 rng(7);
  for (const std::string& p : patterns) {
    const auto c = Constraint::regex(p);
    std::string ecma = p;
    const std::regex oracle(ecma, std::regex::ECMAScript);
    int matched = 0;
    for (int i = 0; i < 3000; ++i) {
      std::string s;
      const int len = static_cast<int>(rng() % 9);
      for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
      const bool want = std::regex_match(s, oracle);
      matched += want;
      EXPECT_EQ(c->matches(s), want) << "pattern " << p << " on '" << s << "'";
    }
    // Also strings built from the pattern's own characters (more of them match).
    for (int i = 0; i < 3000; ++i) {
      std::string s;
      const int len = static_cast<int>(rng() % 7);
      for (int k = 0; k < len; ++k) s += p[rng() % p.size()];
      EXPECT_EQ(c->matches(s), std::regex_match(s, oracle))
          << "pattern " << p << " on '" << s << "'";
    }
    (void)matched;
  }
}

TEST(ConstraintRegex, Utf8AndDistances) {
  const auto c = Constraint::regex("é+.x");
  EXPECT_TRUE(c->matches("éé€x"));
  EXPECT_TRUE(c->matches("éax"));
  EXPECT_FALSE(c->matches("é\nx"));
  EXPECT_FALSE(
      c->matches("é\xff"
                 "x"));  // not UTF-8
  EXPECT_FALSE(
      c->matches("\xc3"
                 "x"));                   // half a character
  EXPECT_EQ(c->distance(c->start()), 4);  // é (2 bytes) + one byte + x
  const auto d = Constraint::regex("[^a]");
  EXPECT_TRUE(d->matches("日"));
  EXPECT_FALSE(d->matches("\xed\xa0\x80"));  // a surrogate is not a character
  EXPECT_TRUE(Constraint::regex("yes|no")->complete(Constraint::regex("yes|no")->advance(0, "no")));
}

TEST(ConstraintRegex, BadPatternsNameTheProblemAndOffset) {
  auto message = [](const char* p) {
    try {
      Constraint::regex(p);
    } catch (const seqit::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("(ab").find("missing ')' at offset 3"), std::string::npos) << message("(ab");
  EXPECT_NE(message("ab)").find("unbalanced ')'"), std::string::npos);
  EXPECT_NE(message("(a)\\1").find("backreferences"), std::string::npos);
  EXPECT_NE(message("(?=a)").find("lookaround"), std::string::npos);
  EXPECT_NE(message("*a").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(message("a{3,2}").find("n < m"), std::string::npos);
  EXPECT_NE(message("[é]").find("non-ASCII"), std::string::npos);
  EXPECT_NE(message("a{5000}").find("above 1000"), std::string::npos);
  // Hostile inputs (a server compiles what clients send) are refused quickly, not compiled.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(message("(?:a{1000}){1000}").find("too large"), std::string::npos);
  EXPECT_NE(message(std::string(300, '(').c_str()).find("nested deeper than 200"),
            std::string::npos);
  EXPECT_NE(message("(?:.{0,40}x){0,40}").find("simplify it"), std::string::npos);
  nlohmann::ordered_json many = {{"type", "object"},
                                 {"properties", nlohmann::ordered_json::object()}};
  for (int i = 0; i < 40; ++i) many["properties"]["p" + std::to_string(i)] = {{"type", "integer"}};
  try {
    Constraint::json_schema(many);
    ADD_FAILURE() << "40 optional properties compiled";
  } catch (const seqit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
}

TEST(ConstraintJson, SchemaAcceptsExactlyTheValidDocuments) {
  const auto c = Constraint::json_schema(nlohmann::ordered_json::parse(kJudgeSchema));
  for (
      const char* good :
      {R"({"subtasks":["a"],"verdict":"yes","score":3,"detail":{"ok":true}})",
       R"({"subtasks":["x\"y","\u00e9t\n"],"verdict":"no","score":-12,"detail":{"ok":false,"note":null}})",
       R"({"subtasks":["","b","c"],"verdict":"no","score":0,"detail":{"ok":true,"note":"fine"}})"}) {
    EXPECT_TRUE(c->matches(good)) << good;
    std::string why;
    EXPECT_TRUE(valid_judge(nlohmann::ordered_json::parse(good), &why)) << why;
  }
  for (
      const char* bad : {
          R"({"verdict":"yes","subtasks":["a"],"score":3,"detail":{"ok":true}})",        // order
          R"({"subtasks":[],"verdict":"yes","score":3,"detail":{"ok":true}})",           // minItems
          R"({"subtasks":["a"],"verdict":"maybe","score":3,"detail":{"ok":true}})",      // enum
          R"({"subtasks":["a"],"verdict":"yes","score":3.5,"detail":{"ok":true}})",      // integer
          R"({"subtasks":["a"],"verdict":"yes","score":3,"detail":{}})",                 // required
          R"({"subtasks":["a"],"verdict":"yes","score":3,"detail":{"ok":true,"x":1}})",  // extra
          R"({"subtasks":["abcdefghijklm"],"verdict":"yes","score":3,"detail":{"ok":true}})",  // maxLength
          R"({"subtasks":["a"],"verdict":"yes","score":03,"detail":{"ok":true}})",  // leading zero
          R"({"subtasks":["\ud800"],"verdict":"yes","score":3,"detail":{"ok":true}})",  // surrogate
      }) {
    EXPECT_FALSE(c->matches(bad)) << bad;
  }
}

TEST(ConstraintJson, RefsConstAnyOfAndRefusals) {
  const auto schema = nlohmann::ordered_json::parse(R"({
    "$defs": {"pair": {"type": "array", "items": {"const": 1}, "minItems": 2, "maxItems": 2}},
    "type": "object",
    "properties": {"p": {"$ref": "#/$defs/pair"}, "q": {"anyOf": [{"type": "null"}, {"type": "number"}]}},
    "required": ["p"]
  })");
  const auto c = Constraint::json_schema(schema);
  EXPECT_TRUE(c->matches(R"({"p":[1,1]})"));
  EXPECT_TRUE(c->matches(R"({"p":[1,1],"q":null})"));
  EXPECT_TRUE(c->matches(R"({"p":[1,1],"q":-2.5e+3})"));
  EXPECT_FALSE(c->matches(R"({"q":null})"));
  EXPECT_FALSE(c->matches(R"({"p":[1]})"));
  auto error = [](const char* s) {
    try {
      Constraint::json_schema(nlohmann::ordered_json::parse(s));
    } catch (const seqit::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error(R"({"type":"string","format":"date"})").find("'format' is not supported"),
            std::string::npos);
  EXPECT_NE(error(R"({"type":"object","properties":{"a":{"$ref":"#/nope"}}})")
                .find("at /properties/a/$ref"),
            std::string::npos);
  EXPECT_NE(error(R"({"$ref":"#"})").find("recursive"), std::string::npos);
  EXPECT_NE(error(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["b"]})")
                .find("not defined"),
            std::string::npos);
  const auto any = Constraint::json_object();
  EXPECT_TRUE(any->matches(R"({"a":[1,{"b":null}],"c":"d"})"));
  EXPECT_FALSE(any->matches(R"([1])"));
  EXPECT_FALSE(any->matches(R"({"a":1,})"));
}

// Random walks through the token masks of the stories260K and Llama-2 (32k) vocabularies: in
// every state before completion some token is allowed (or the text is already in the language),
// and a walk always ends complete within a bounded number of tokens when it steers by distance.
TEST(ConstraintMask, RandomWalksNeverHitADeadEnd) {
  const auto llama2 =
      seqit::tokenizer::load_tokenizer(shared_data("tokenizers/llama2/llama2c_tokenizer.bin"));
  const TokenTrie small(*stories().tok), big(*llama2);
  EXPECT_TRUE(small.has_every_byte());
  EXPECT_TRUE(big.has_every_byte());
  const std::vector<std::shared_ptr<const Constraint>> constraints = {
      Constraint::json_schema(nlohmann::ordered_json::parse(kJudgeSchema)),
      Constraint::json_object(), Constraint::choice({"yes", "no", "not sure"}),
      Constraint::regex(R"([1-5]|score: \d{2})")};
  std::mt19937 rng(11);
  for (const TokenTrie* trie : {&small, &big}) {
    for (const auto& c : constraints) {
      for (int walk = 0; walk < 60; ++walk) {
        int32_t state = c->start();
        std::string text;
        for (int step = 0; step < 400 && !c->complete(state); ++step) {
          const auto& allowed = c->allowed(*trie, state);
          ASSERT_TRUE(!allowed.empty() || c->accepting(state))
              << c->describe() << " dead end after '" << text << "'";
          if (allowed.empty()) break;
          // Wander for a while, then head for the end.
          const Constraint::Allowed* pick = &allowed[rng() % allowed.size()];
          if (step > 40)
            for (const auto& a : allowed)
              if (c->distance(a.next) < c->distance(pick->next)) pick = &a;
          ASSERT_EQ(c->advance(state, trie->bytes(pick->token)), pick->next);
          text += trie->bytes(pick->token);
          state = pick->next;
        }
        EXPECT_TRUE(c->accepting(state)) << c->describe() << ": '" << text << "'";
        EXPECT_TRUE(c->matches(text)) << text;
      }
    }
  }
}

// 200 seeded samples (temperature 1) and greedy generation from 8 prompts per constraint kind with
// stories260K: 100% parse and validate, every request ends complete (reason stop, within its
// budget), never at a dead end; the same requests unconstrained mostly do not parse.
TEST(ConstrainedGeneration, Stories260KAlwaysProducesValidOutput) {
  Stories& s = stories();
  struct Kind {
    std::string name;
    std::shared_ptr<const Constraint> constraint;
    std::function<bool(const std::string&, std::string*)> valid;
    int64_t max_tokens;
  };
  const std::regex score_re(R"([1-5]|score: \d{2})");
  std::vector<Kind> kinds = {
      {"json schema", Constraint::json_schema(nlohmann::ordered_json::parse(kJudgeSchema)),
       [](const std::string& t, std::string* why) {
         nlohmann::ordered_json j;
         try {
           j = nlohmann::ordered_json::parse(t);
         } catch (const std::exception& e) {
           *why = e.what();
           return false;
         }
         return valid_judge(j, why);
       },
       160},
      {"json object", Constraint::json_object(),
       [](const std::string& t, std::string* why) {
         try {
           return nlohmann::json::parse(t).is_object();
         } catch (const std::exception& e) {
           *why = e.what();
           return false;
         }
       },
       120},
      {"choice", Constraint::choice({"yes", "no", "not sure"}),
       [](const std::string& t, std::string*) {
         return t == "yes" || t == "no" || t == "not sure";
       },
       16},
      {"regex", Constraint::regex(R"([1-5]|score: \d{2})"),
       [&](const std::string& t, std::string*) { return std::regex_match(t, score_re); }, 16}};
  const std::vector<std::string> prompts = {
      "Once upon a time",   "The answer is", "Lily said", "{", "Tom",
      "The dog ran to the", "Yes or no?",    "1"};
  for (const Kind& k : kinds) {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 200 + static_cast<int>(prompts.size()); ++i) {
      GenerationRequest r;
      const bool greedy = i >= 200;
      r.prompt = s.tok->encode(greedy ? prompts[static_cast<size_t>(i - 200)] : prompts[i % 8]);
      r.sampling.temperature = greedy ? 0.0f : 1.0f;
      r.sampling.seed = static_cast<uint64_t>(i);
      r.stop.max_new_tokens = k.max_tokens;
      r.constraint = k.constraint;
      requests.push_back(std::move(r));
    }
    Engine engine(*s.model, s.tok.get(), {.max_batch = 32});
    const auto results = engine.generate(requests);
    int valid = 0;
    for (size_t i = 0; i < results.size(); ++i) {
      std::string why;
      const bool ok = k.valid(results[i].text, &why);
      valid += ok;
      EXPECT_TRUE(ok) << k.name << " sample " << i << ": '" << results[i].text << "' " << why;
      EXPECT_EQ(results[i].finish, FinishReason::stop_token) << k.name << " sample " << i;
      EXPECT_LE(static_cast<int64_t>(results[i].tokens.size()), k.max_tokens);
    }
    EXPECT_EQ(valid, static_cast<int>(results.size())) << k.name;
    // The same requests without the constraint.
    for (auto& r : requests) r.constraint = nullptr;
    Engine plain(*s.model, s.tok.get(), {.max_batch = 32});
    int plain_valid = 0;
    for (const auto& r : plain.generate(requests)) {
      std::string why;
      plain_valid += k.valid(r.text, &why);
    }
    EXPECT_LT(plain_valid, static_cast<int>(requests.size()) / 4) << k.name;
    std::printf("%s: %d/%zu valid constrained, %d unconstrained\n", k.name.c_str(), valid,
                results.size(), plain_valid);
  }
}

// A reply that starts a text (a chat answer) shows its first token without the SentencePiece space:
// the constraint judges that token by what shows, so the model may open with its usual "▁Once"
// and the text still matches exactly.
TEST(ConstrainedGeneration, FirstTokenOfAReplyIsJudgedWithoutItsDroppedSpace) {
  Stories& s = stories();
  GenerationRequest r;
  r.prompt = {1};
  r.text_standalone = true;
  r.stop.max_new_tokens = 24;  // >= 16 bytes: the budget filter assumes a byte per token
  r.constraint = Constraint::choice({"Once upon a time", "Lily"});
  Engine engine(*s.model, s.tok.get());
  const GenerationResult got = engine.generate({r})[0];
  EXPECT_EQ(got.text, "Once upon a time");
  ASSERT_FALSE(got.tokens.empty());
  EXPECT_EQ(s.tok->token_bytes(got.tokens[0]).substr(0, 1), " ");  // "▁Once", shown as "Once"
  EXPECT_EQ(got.finish, FinishReason::stop_token);
  // Not at a text start, the same token would show its space, which the choice does not allow.
  r.text_standalone = false;
  r.prompt = s.tok->encode("The story:");
  const GenerationResult mid = engine.generate({r})[0];
  EXPECT_TRUE(mid.text == "Once upon a time" || mid.text == "Lily") << mid.text;
  EXPECT_NE(s.tok->token_bytes(mid.tokens[0]).substr(0, 1), " ");
}

// Masks are cached per trie by a process-unique id, not its address: tries of two vocabularies made
// and destroyed in turn (the allocator may hand out the same address) each get their own masks,
// equal to a brute-force walk of every token's bytes.
TEST(ConstraintMask, CachedMasksBelongToTheirTrie) {
  const auto llama2 =
      seqit::tokenizer::load_tokenizer(shared_data("tokenizers/llama2/llama2c_tokenizer.bin"));
  const auto c = Constraint::regex(R"(\{"a": [0-9]+\})");
  for (int round = 0; round < 3; ++round) {
    for (const seqit::tokenizer::Tokenizer* tok : {stories().tok.get(), llama2.get()}) {
      auto trie = std::make_unique<TokenTrie>(*tok);
      for (int32_t state : {c->start(), c->advance(c->start(), "{\"a\": 1")}) {
        std::vector<TokenId> want;
        for (size_t id = 0; id < trie->vocab_size(); ++id) {
          const std::string& b = trie->bytes(static_cast<TokenId>(id));
          if (!b.empty() && c->advance(state, b) != Constraint::kDead)
            want.push_back(static_cast<TokenId>(id));
        }
        std::vector<TokenId> got;
        for (const auto& a : c->allowed(*trie, state)) got.push_back(a.token);
        EXPECT_EQ(got, want) << tok->describe() << " state " << state;
      }
    }
  }
}
