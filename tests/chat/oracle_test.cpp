// Oracle parity: every real chat template in shared/data × a set of conversations, rendered by
// seqit, by @huggingface/jinja (the JS engine of transformers.js; scripts/oracles installs it) and
// by Python jinja2 configured as transformers' apply_chat_template (the referee where the two
// references disagree). The rendered text must be byte-identical to the references; every case
// where a reference fails or the references disagree is listed below with its reason.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "chat/chat_template.h"
#include "testing.h"

namespace seqit::chat {
namespace {
namespace fs = std::filesystem;
using testing::shared_data;
using ojson = nlohmann::ordered_json;

// A fixed clock for strftime_now(): 2024-07-26 12:00:00 UTC.
constexpr int64_t kNowUnix = 1721995200;

// Templates whose output from @huggingface/jinja differs from Python jinja2 (transformers) on
// some of our conversations, and why. seqit follows Python.
const std::map<std::string, std::string> kJsDiffers = {
    {"meetkai-functionary-medium-v3.1.jinja",
     "\"...\"|safe + (t | tojson): in Python a Markup plus a str HTML-escapes the str "
     "(markupsafe), so "
     "transformers writes &#34; for the quotes of the tool JSON; @huggingface/jinja's safe is a "
     "no-op"},
    {"HuggingFaceTB-SmolLM3-3B.jinja",
     "@huggingface/jinja's str.lstrip/rstrip/strip ignore their chars argument and strip all "
     "whitespace; the template calls content.lstrip('\\n'), so a reply starting with a space loses "
     "it in JS but not in Python"},
    {"Qwen-Qwen3-0.6B.jinja",
     "@huggingface/jinja's str.lstrip/rstrip/strip ignore their chars argument and strip all "
     "whitespace; the template calls content.lstrip('\\n'), so a reply starting with a space loses "
     "it in JS but not in Python"},
    {"mistralrs_smollm3.jinja",
     "@huggingface/jinja's str.lstrip/rstrip/strip ignore their chars argument and strip all "
     "whitespace; the template calls content.lstrip('\\n'), so a reply starting with a space loses "
     "it in JS but not in Python"},
    {"qwen/qwen3_tokenizer_config.json",
     "@huggingface/jinja's str.lstrip/rstrip/strip ignore their chars argument and strip all "
     "whitespace; the template calls content.lstrip('\\n'), so a reply starting with a space loses "
     "it in JS but not in Python"},
};

// Templates @huggingface/jinja cannot render for some conversations although Python jinja2 can.
// seqit renders them as Python does.
const std::map<std::string, std::string> kJsFails = {
    {"Apriel-1.6-15b-Thinker-fixed.jinja",
     "applies |string to a dict; @huggingface/jinja has no string filter for objects"},
    {"ByteDance-Seed-OSS.jinja",
     "a dict literal with integer keys; @huggingface/jinja only allows string keys (Object keys "
     "must be strings)"},
    {"meetkai-functionary-medium-v3.1.jinja",
     "tools | selectattr(...) with tools=None: Python's select filters yield nothing for a falsy "
     "input, "
     "@huggingface/jinja throws (Cannot apply filter selectattr to NullValue)"},
    {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
     "|trim on an undefined value: Python gives '' (soft_str), @huggingface/jinja throws"},
    {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
     "|trim on an undefined value: Python gives '' (soft_str), @huggingface/jinja throws"},
    {"meetkai-functionary-medium-v3.2.jinja",
     "unpacks (key, value) tuples in a for loop, which @huggingface/jinja refuses (Cannot unpack "
     "TupleValue)"},
    {"openbmb-MiniCPM5-1B.jinja", "uses the |min filter, which @huggingface/jinja does not have"},
    {"unsloth-Apriel-1.5.jinja",
     "applies |string to a dict; @huggingface/jinja has no string filter for objects"},
    {"tencent-Hy3.jinja",
     "calls str.format() ('<...{}...>'.format(HYTK)), which @huggingface/jinja does not have"},
};

// Templates Python jinja2 (transformers) refuses although @huggingface/jinja renders them. seqit
// renders them as @huggingface/jinja does (and `seqit template check` warns).
const std::map<std::string, std::string> kPythonFails = {
    {"llama-cpp-deepseek-r1.jinja",
     "tools | map(...) | tojson: Python's map filter returns a generator, which json.dumps refuses "
     "(TypeError); "
     "seqit's map returns a list, as @huggingface/jinja's does"},
};

std::vector<fs::path> all_templates() {
  std::vector<fs::path> out;
  fs::path dir = shared_data("tokenizers/chat_templates");
  for (const auto& e : fs::directory_iterator(dir / "llamacpp")) {
    if (e.path().extension() == ".jinja") out.push_back(e.path());
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    auto ext = e.path().extension();
    if (ext == ".jinja" || ext == ".json") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  out.push_back(shared_data("tokenizers/llama3/tokenizer_config.json"));
  out.push_back(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  return out;
}

std::string label_of(const fs::path& p) {
  std::string parent = p.parent_path().filename().string();
  if (parent == "llamacpp" || parent == "chat_templates") return p.filename().string();
  return parent + "/" + p.filename().string();
}

bool contains_ci(std::string s, std::string what) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  std::transform(what.begin(), what.end(), what.begin(), ::tolower);
  return s.find(what) != std::string::npos;
}

// Special tokens: the template file's own, else the matching tokenizer config in shared/data,
// else a generic <s>/</s>.
SpecialTokens tokens_for(const fs::path& p, const ChatTemplate& t) {
  if (t.special_tokens().bos() || t.special_tokens().eos()) return t.special_tokens();
  std::string name = p.filename().string();
  if (contains_ci(name, "llama-3") || contains_ci(name, "llama3")) {
    return read_special_tokens(shared_data("tokenizers/llama3/tokenizer_config.json"));
  }
  if (contains_ci(name, "qwen") || contains_ci(name, "qwq")) {
    return read_special_tokens(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  }
  if (contains_ci(name, "tinyllama") || contains_ci(name, "llama2") ||
      contains_ci(name, "mistral")) {
    return read_special_tokens(shared_data("tokenizers/llama2/tokenizer_config.json"));
  }
  SpecialTokens generic;
  generic.set("bos_token", "<s>");
  generic.set("eos_token", "</s>");
  return generic;
}

ojson msg(const char* role, const char* content) {
  return ojson{{"role", role}, {"content", content}};
}

// A tool definition as transformers passes it (get_json_schema format).
ojson weather_tools() {
  return ojson::parse(R"([{"type": "function", "function": {"name": "get_weather",
    "description": "Get the current weather in a city", "parameters": {"type": "object",
    "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"},
    "ratio": {"type": "number"}}, "required": ["city"]}}}])");
}

struct Conversation {
  std::string name;
  ojson messages;
  ojson tools = nullptr;
};

std::vector<Conversation> conversations() {
  const char* sys = "You are a helpful assistant.";
  const char* tricky_user = "  Quote: \"hi\" 'x' \\n {{ x }} {% y %} 日本語 😀 tab\there  ";
  const char* tricky_reply = "\n Résumé: é ✓ — <b>bold</b> & done. \n";
  ojson tool_call =
      ojson::parse(R"({"role": "assistant", "content": "", "tool_calls": [{"id": "call_1",
    "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}}]})");
  ojson tool_result =
      ojson::parse(R"({"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
    "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"})");
  return {
      {"tools", ojson::array({msg("system", sys), msg("user", "Weather in Zürich?")}),
       weather_tools()},
      {"toolcall",
       ojson::array({msg("user", "Weather in Zürich?"), tool_call, tool_result,
                     msg("assistant", "It is 21.5 °C and clear.")}),
       weather_tools()},
      {"u", ojson::array({msg("user", "Hello")})},
      {"su", ojson::array({msg("system", sys), msg("user", "Hello")})},
      {"ua", ojson::array({msg("user", "Hello"), msg("assistant", "Hi! How can I help?")})},
      {"sua",
       ojson::array({msg("system", sys), msg("user", "What is 2+2?"), msg("assistant", "4")})},
      {"uau", ojson::array(
                  {msg("user", "Hi"), msg("assistant", "Hello."), msg("user", "Tell me a joke.")})},
      {"suaua", ojson::array({msg("system", sys), msg("user", "Hi"), msg("assistant", "Hello."),
                              msg("user", "Name a colour."), msg("assistant", "Blue.")})},
      {"uauaua",
       ojson::array({msg("user", "One"), msg("assistant", "1"), msg("user", "Two"),
                     msg("assistant", "2"), msg("user", "Three"), msg("assistant", "3")})},
      {"suauau", ojson::array({msg("system", sys), msg("user", "One"), msg("assistant", "1"),
                               msg("user", "Two"), msg("assistant", "2"), msg("user", "Three")})},
      {"tricky", ojson::array({msg("system", "  Be brief.\n"), msg("user", tricky_user),
                               msg("assistant", tricky_reply)})},
  };
}

struct Case {
  std::string id, label;
  fs::path path;
  ojson messages, tools;
  bool add_generation_prompt;
  SpecialTokens tokens;
  std::string source;
};

std::map<std::string, ojson> run_reference(const std::string& command, const fs::path& out_path) {
  std::string output;
  int rc = testing::run_command(command, &output);
  if (rc != 0) throw std::runtime_error("reference renderer failed (" + command + "):\n" + output);
  std::ifstream in(out_path);
  ojson results = ojson::parse(in);
  std::map<std::string, ojson> by_id;
  for (auto& r : results) by_id[r["id"].get<std::string>()] = r;
  return by_id;
}

fs::path oracle_modules() {
  fs::path modules = testing::source_dir() / "build" / "oracles" / "node_modules";
  if (!fs::exists(modules / "@huggingface" / "jinja")) {
    throw std::runtime_error("@huggingface/jinja is not installed in " + modules.string() +
                             ": run scripts/oracles (needs node and npm)");
  }
  return modules;
}

void require_python_jinja2() {
  std::string out;
  if (testing::run_command("python3 -c 'import jinja2'", &out) != 0) {
    throw std::runtime_error(
        "Python jinja2 is missing (the transformers referee): install python3-jinja2 "
        "(scripts/setup --tests does)\n" +
        out);
  }
}

struct Outcome {
  bool ok = false;
  std::string text, error;
  bool raised = false;  // raise_exception
};

Outcome render_with_seqit(const Case& c) {
  Outcome o;
  try {
    ChatTemplate t = ChatTemplate::from_source(c.source, c.label, c.tokens);
    RenderOptions opt;
    opt.add_generation_prompt = c.add_generation_prompt;
    opt.now_unix = kNowUnix;
    opt.tools = jinja::from_json(c.tools);
    o.text = t.render(jinja::from_json(c.messages), opt).text;
    o.ok = true;
  } catch (const jinja::TemplateRaisedError& e) {
    o.error = e.message();
    o.raised = true;
  } catch (const Error& e) {
    o.error = e.what();
  }
  return o;
}

TEST(ChatOracle, EveryRealTemplateRendersLikeTheReferences) {
  fs::path modules = oracle_modules();
  require_python_jinja2();
  testing::TempDir tmp;

  std::vector<Case> cases;
  for (const auto& path : all_templates()) {
    ChatTemplate t = ChatTemplate::from_file(path);
    SpecialTokens tokens = tokens_for(path, t);
    for (const auto& conv : conversations()) {
      for (bool agp : {false, true}) {
        Case c;
        c.label = label_of(path);
        c.id = c.label + "|" + conv.name + (agp ? "|gen" : "");
        c.path = path;
        c.messages = conv.messages;
        c.tools = conv.tools;
        c.add_generation_prompt = agp;
        c.tokens = tokens;
        c.source = t.source();
        cases.push_back(std::move(c));
      }
    }
  }
  ojson input;
  input["now_ms"] = kNowUnix * 1000;
  input["cases"] = ojson::array();
  for (const auto& c : cases) {
    ojson ctx;
    ctx["messages"] = c.messages;
    ctx["tools"] = c.tools;
    ctx["documents"] = nullptr;
    ctx["add_generation_prompt"] = c.add_generation_prompt;
    for (const auto& [k, v] : c.tokens.named) ctx[k] = v;
    if (!c.tokens.additional.empty()) ctx["additional_special_tokens"] = c.tokens.additional;
    input["cases"].push_back({{"id", c.id}, {"template", c.source}, {"context", ctx}});
  }
  fs::path cases_path = tmp / "cases.json";
  testing::spit(cases_path, input.dump());
  std::string env = "TZ=UTC LC_ALL=C ";
  auto js = run_reference(
      env + "node " +
          testing::shell_quote((testing::source_dir() / "tests/chat/jinja_oracle.cjs").string()) +
          " " + testing::shell_quote(modules.string()) + " " +
          testing::shell_quote(cases_path.string()) + " " +
          testing::shell_quote((tmp / "js.json").string()),
      tmp / "js.json");
  auto py = run_reference(
      env + "python3 " +
          testing::shell_quote((testing::source_dir() / "tests/chat/hf_jinja2.py").string()) + " " +
          testing::shell_quote(cases_path.string()) + " " +
          testing::shell_quote((tmp / "py.json").string()),
      tmp / "py.json");

  size_t identical_to_js = 0, js_rendered = 0, both_raise = 0;
  std::set<std::string> js_differs, js_fails, py_fails;
  for (const auto& c : cases) {
    const ojson& j = js.at(c.id);
    const ojson& p = py.at(c.id);
    Outcome ours = render_with_seqit(c);
    bool j_ok = j["ok"].get<bool>(), p_ok = p["ok"].get<bool>();
    if (j_ok) ++js_rendered;
    if (j_ok && p_ok) {
      const std::string jt = j["text"].get<std::string>(), pt = p["text"].get<std::string>();
      if (jt != pt) js_differs.insert(c.label);
      EXPECT_TRUE(ours.ok) << c.id << ": seqit failed: " << ours.error;
      EXPECT_EQ(ours.text, pt) << c.id << " (Python jinja2 reference)";
      if (ours.ok && ours.text == jt) ++identical_to_js;
    } else if (!j_ok && p_ok) {
      js_fails.insert(c.label);
      EXPECT_TRUE(ours.ok) << c.id << ": seqit failed: " << ours.error;
      EXPECT_EQ(ours.text, p["text"].get<std::string>())
          << c.id << " (Python jinja2 reference; JS: " << j["error"] << ")";
    } else if (j_ok && !p_ok) {
      py_fails.insert(c.label);
      EXPECT_TRUE(ours.ok) << c.id << ": seqit failed: " << ours.error << " (Python: " << p["error"]
                           << ")";
      EXPECT_EQ(ours.text, j["text"].get<std::string>())
          << c.id << " (JS reference; Python: " << p["error"] << ")";
      if (ours.ok && ours.text == j["text"].get<std::string>()) ++identical_to_js;
    } else {
      // Both references refuse: so must seqit, with the template's own message for raise_exception.
      EXPECT_FALSE(ours.ok) << c.id
                            << ": seqit rendered what both references refuse (JS: " << j["error"]
                            << ", Python: " << p["error"] << ")";
      std::string perr = p["error"].get<std::string>();
      const std::string prefix = "TemplateError: ";
      if (perr.rfind(prefix, 0) == 0) {
        ++both_raise;
        EXPECT_TRUE(ours.raised) << c.id << ": expected raise_exception, got: " << ours.error;
        EXPECT_EQ(ours.error, perr.substr(prefix.size())) << c.id;
      }
    }
  }
  auto check_documented = [](const std::set<std::string>& seen,
                             const std::map<std::string, std::string>& documented,
                             const char* what) {
    for (const auto& label : seen) {
      EXPECT_TRUE(documented.count(label))
          << label << ": " << what << " but this is not documented in oracle_test.cpp";
    }
    for (const auto& [label, reason] : documented) {
      EXPECT_TRUE(seen.count(label))
          << label << ": documented as '" << what << "' but it no longer is";
    }
  };
  check_documented(js_differs, kJsDiffers, "@huggingface/jinja output differs from Python jinja2");
  check_documented(js_fails, kJsFails, "@huggingface/jinja fails where Python jinja2 renders");
  check_documented(py_fails, kPythonFails, "Python jinja2 fails where @huggingface/jinja renders");
  std::printf(
      "chat oracle: %zu cases over %zu templates; @huggingface/jinja rendered %zu, seqit identical "
      "to it "
      "in %zu; both references raise_exception in %zu (seqit raises the same message)\n",
      cases.size(), all_templates().size(), js_rendered, identical_to_js, both_raise);
}

}  // namespace
}  // namespace seqit::chat
