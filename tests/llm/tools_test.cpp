// Tools through chat templates: the call format of real templates, calls read back from replies,
// the constraint that holds a reply to one call, a conversation with calls and results rendered as
// the templates expect, and `seqit serve` answering OpenAI's tools / tool_choice (a tiny random
// Llama 2 with Qwen 2.5's template: 4,096 positions hold the tools prompt) — every forced call of
// 40 seeded samples parses and fits its tool's schema.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <set>

#include "chat/chat_template.h"
#include "infer/constraint.h"
#include "llm/http_backend.h"
#include "llm/local_backend.h"
#include "llm/request_job.h"
#include "llm/tool_calls.h"
#include "serve_process.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::llm {
namespace {
using nlohmann::json;
using seqit::testing::ServeProcess;
using seqit::testing::shared_data;

std::string template_path(const std::string& name) {
  return shared_data("tokenizers/chat_templates/llamacpp/" + name + ".jinja").string();
}
std::string template_source(const std::string& name) {
  return seqit::testing::slurp(template_path(name));
}

const char* kTools = R"([{"type": "function", "function": {"name": "get_weather",
  "description": "The weather of a city", "parameters": {"type": "object", "properties": {
  "city": {"type": "string", "maxLength": 12}, "unit": {"type": "string", "enum": ["c", "f"]}},
  "required": ["city", "unit"], "additionalProperties": false}}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
  "properties": {"zone": {"type": "string", "maxLength": 8}}, "required": ["zone"],
  "additionalProperties": false}}}])";

TEST(ToolFormat, RecognisedFromRealTemplates) {
  EXPECT_EQ(detect_tool_format(template_source("Qwen-Qwen2.5-7B-Instruct")), ToolFormat::hermes);
  EXPECT_EQ(detect_tool_format(template_source("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use")),
            ToolFormat::hermes);
  EXPECT_EQ(detect_tool_format(template_source("meta-llama-Llama-3.1-8B-Instruct")),
            ToolFormat::llama3_json);
  EXPECT_EQ(detect_tool_format(template_source("mistralai-Mistral-Nemo-Instruct-2407")),
            ToolFormat::mistral);
  EXPECT_EQ(detect_tool_format(template_source("google-gemma-2-2b-it")), ToolFormat::none);
  EXPECT_EQ(detect_tool_format("{% if tools %}{{ tools | tojson }}{% endif %}"),
            ToolFormat::unknown);
}

TEST(ToolCalls, ReadBackInEachFormat) {
  // hermes: text before, two blocks, arguments as an object.
  ParsedReply h = parse_tool_calls(
      ToolFormat::hermes,
      "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", "
      "\"arguments\": {\"zone\": \"CET\"}}\n</tool_call>");
  ASSERT_EQ(h.calls.size(), 2u);
  EXPECT_EQ(h.content, "Let me look.");
  EXPECT_EQ(h.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(h.calls[0].arguments), json::parse(R"({"city":"Paris","unit":"c"})"));
  EXPECT_EQ(h.calls[1].name, "get_time");
  // A block cut off before its closing tag is still a call; a malformed one leaves text.
  EXPECT_EQ(
      parse_tool_calls(ToolFormat::hermes, "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}")
          .calls.size(),
      1u);
  const ParsedReply bad =
      parse_tool_calls(ToolFormat::hermes, "<tool_call>{\"name\": 3}</tool_call>");
  EXPECT_TRUE(bad.calls.empty());
  EXPECT_EQ(bad.content, "<tool_call>{\"name\": 3}</tool_call>");
  EXPECT_TRUE(parse_tool_calls(ToolFormat::hermes, "Just text.").calls.empty());
  // mistral: with and without the marker (a special token a decoded text may not show).
  for (const char* reply :
       {"[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}, \"id\": "
        "\"abcdef123\"}]",
        " [{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": \\\"UTC\\\"}\"}]"}) {
    ParsedReply m = parse_tool_calls(ToolFormat::mistral, reply);
    ASSERT_EQ(m.calls.size(), 1u) << reply;
    EXPECT_EQ(m.calls[0].name, "get_time");
    EXPECT_EQ(json::parse(m.calls[0].arguments), json::parse(R"({"zone":"UTC"})"));
    EXPECT_TRUE(m.content.empty());
  }
  EXPECT_TRUE(parse_tool_calls(ToolFormat::mistral, "[1, 2]").calls.empty());
  // llama3_json: the whole reply, "parameters" (or "arguments").
  ParsedReply l = parse_tool_calls(
      ToolFormat::llama3_json, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}");
  ASSERT_EQ(l.calls.size(), 1u);
  EXPECT_EQ(json::parse(l.calls[0].arguments), json::parse(R"({"city":"Oslo"})"));
  EXPECT_TRUE(
      parse_tool_calls(ToolFormat::llama3_json, "The answer is {\"name\": \"x\"}").calls.empty());
  EXPECT_TRUE(parse_tool_calls(ToolFormat::unknown, "<tool_call>{}</tool_call>").calls.empty());
}

TEST(ToolCalls, PatternHoldsAReplyToOneCallOfTheGivenTools) {
  for (ToolFormat f : {ToolFormat::hermes, ToolFormat::mistral, ToolFormat::llama3_json}) {
    const auto any = infer::Constraint::regex(tool_call_pattern(f, kTools));
    const auto named = infer::Constraint::regex(tool_call_pattern(f, kTools, "get_time"));
    const std::string key = f == ToolFormat::llama3_json ? "parameters" : "arguments";
    auto wrap = [&](const std::string& call) {
      if (f == ToolFormat::hermes) return "<tool_call>\n" + call + "\n</tool_call>";
      if (f == ToolFormat::mistral) return "[" + call + "]";
      return call;
    };
    const std::string weather =
        wrap(R"({"name":"get_weather",")" + key + R"(":{"city":"Paris","unit":"c"}})");
    const std::string time = wrap(R"({"name":"get_time",")" + key + R"(":{"zone":"UTC"}})");
    EXPECT_TRUE(any->matches(weather)) << to_string(f);
    EXPECT_TRUE(any->matches(time)) << to_string(f);
    EXPECT_FALSE(named->matches(weather)) << to_string(f);
    EXPECT_TRUE(named->matches(time)) << to_string(f);
    // The schema holds: an unknown unit, a missing argument, an unknown tool.
    EXPECT_FALSE(any->matches(
        wrap(R"({"name":"get_weather",")" + key + R"(":{"city":"Paris","unit":"k"}})")));
    EXPECT_FALSE(any->matches(wrap(R"({"name":"get_weather",")" + key + R"(":{"city":"Paris"}})")));
    EXPECT_FALSE(any->matches(wrap(R"({"name":"get_date",")" + key + R"(":{"zone":"UTC"}})")));
    // Every reply the pattern admits reads back as the call.
    const ParsedReply back = parse_tool_calls(f, weather);
    ASSERT_EQ(back.calls.size(), 1u) << to_string(f);
    EXPECT_EQ(back.calls[0].name, "get_weather");
  }
  // A parameters schema with a keyword the constraint cannot enforce: any JSON object instead.
  const std::string loose = R"([{"type": "function", "function": {"name": "when", "parameters":
    {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}}}}])";
  const auto any_args = infer::Constraint::regex(tool_call_pattern(ToolFormat::llama3_json, loose));
  EXPECT_TRUE(any_args->matches(R"({"name":"when","parameters":{"day":"2026-12-07"}})"));
  EXPECT_TRUE(any_args->matches(R"({"name":"when","parameters":{"other":[1,2]}})"));
  EXPECT_FALSE(any_args->matches(R"({"name":"when","parameters":[1]})"));
  EXPECT_THROW(tool_call_pattern(ToolFormat::unknown, kTools), Error);
  EXPECT_THROW(tool_call_pattern(ToolFormat::hermes, kTools, "get_date"), Error);
}

// A conversation with a call and its result, rendered as transformers hands it to the template:
// arguments as an object (printed by the template with tojson), the call id, the result.
TEST(ToolCalls, ConversationWithCallsRendersThroughTheTemplates) {
  std::vector<Message> conversation = {{"user", "Weather in Paris?"}};
  Message call{"assistant", ""};
  call.tool_calls = {{"abcdef123", "get_weather", R"({"city": "Paris", "unit": "c"})"}};
  conversation.push_back(call);
  Message result{"tool", "{\"temperature\": 21}"};
  result.tool_call_id = "abcdef123";
  conversation.push_back(result);
  const auto render = [&](const std::string& name) {
    chat::SpecialTokens tokens;  // what the templates' tokenizer configs would give
    tokens.set("bos_token", "<s>");
    tokens.set("eos_token", "</s>");
    auto tmpl = std::make_shared<const chat::ChatTemplate>(
        chat::ChatTemplate::from_source(template_source(name), name, tokens));
    return template_chat_formatter(tmpl, {})(conversation, kTools);
  };
  const ChatPrompt qwen = render("Qwen-Qwen2.5-7B-Instruct");
  EXPECT_EQ(qwen.tool_format, ToolFormat::hermes);
  EXPECT_NE(qwen.text.find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": "
                           "\"get_weather\", \"description\": \"The weather of a city\""),
            std::string::npos)
      << qwen.text;
  EXPECT_NE(qwen.text.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                           "\"Paris\", \"unit\": \"c\"}}\n</tool_call>"),
            std::string::npos)
      << qwen.text;
  EXPECT_NE(qwen.text.find("<tool_response>\n{\"temperature\": 21}\n</tool_response>"),
            std::string::npos)
      << qwen.text;
  EXPECT_TRUE(qwen.text.ends_with("<|im_start|>assistant\n")) << qwen.text;
  const ChatPrompt llama = render("meta-llama-Llama-3.1-8B-Instruct");
  EXPECT_EQ(llama.tool_format, ToolFormat::llama3_json);
  EXPECT_NE(llama.text.find("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", "
                            "\"unit\": \"c\"}}<|eot_id|>"),
            std::string::npos)
      << llama.text;
  const ChatPrompt mistral = render("mistralai-Mistral-Nemo-Instruct-2407");
  EXPECT_EQ(mistral.tool_format, ToolFormat::mistral);
  EXPECT_NE(mistral.text.find("[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                              "\"Paris\", \"unit\": \"c\"}, \"id\": \"abcdef123\"}]"),
            std::string::npos)
      << mistral.text;
  // A template without tools says so.
  auto gemma = std::make_shared<const chat::ChatTemplate>(
      chat::ChatTemplate::from_file(template_path("google-gemma-2-2b-it")));
  try {
    template_chat_formatter(gemma, {})({{"user", "hi"}}, kTools);
    FAIL() << "tools rendered through a template without them";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not render tools"), std::string::npos) << e.what();
  }
}

class ServeTools : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServeProcess(
        {"--model", shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf").string(),
         "--chat-template", template_path("Qwen-Qwen2.5-7B-Instruct")});
  }
  static void TearDownTestSuite() { delete server_; }
  static json post(const json& body, int* status = nullptr) {
    httplib::Client http("127.0.0.1", server_->port());
    http.set_read_timeout(120, 0);
    auto res = http.Post("/v1/chat/completions", body.dump(), "application/json");
    EXPECT_TRUE(res);
    if (!res) return {};
    if (status) *status = res->status;
    return res->body.starts_with("data:") ? json(res->body) : json::parse(res->body);
  }
  static json request(const json& tool_choice, uint64_t seed) {
    return {{"model", "llama-2-tiny-random"},
            {"messages", {{{"role", "user"}, {"content", "What is the weather in Paris?"}}}},
            {"tools", json::parse(kTools)},
            {"tool_choice", tool_choice},
            {"max_tokens", 160},
            {"temperature", 1.0},
            {"seed", seed}};
  }
  static ServeProcess* server_;
};
ServeProcess* ServeTools::server_ = nullptr;

// Characters (code points), as a JSON schema's maxLength counts them.
size_t characters(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Checks one call against kTools' schemas.
void expect_valid_call(const json& call, const std::string& only = "") {
  ASSERT_EQ(call.at("type"), "function") << call.dump();
  const std::string name = call.at("function").at("name");
  const json args = json::parse(call.at("function").at("arguments").get<std::string>());
  EXPECT_FALSE(call.at("id").get<std::string>().empty());
  if (!only.empty()) {
    EXPECT_EQ(name, only);
  }
  if (name == "get_weather") {
    EXPECT_EQ(args.size(), 2u) << args.dump();
    EXPECT_LE(characters(args.at("city")), 12u);
    EXPECT_TRUE(args.at("unit") == "c" || args.at("unit") == "f") << args.dump();
  } else {
    ASSERT_EQ(name, "get_time");
    EXPECT_EQ(args.size(), 1u) << args.dump();
    EXPECT_LE(characters(args.at("zone")), 8u);
  }
}

TEST_F(ServeTools, RequiredAndNamedCallsAlwaysParseAndFitTheSchema) {
  std::set<std::string> names;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const json body = post(request("required", seed));
    const json& choice = body.at("choices").at(0);
    ASSERT_EQ(choice.at("finish_reason"), "tool_calls") << body.dump();
    EXPECT_TRUE(choice.at("message").at("content").is_null());
    ASSERT_EQ(choice.at("message").at("tool_calls").size(), 1u);
    expect_valid_call(choice.at("message").at("tool_calls").at(0));
    names.insert(choice.at("message").at("tool_calls").at(0).at("function").at("name"));
  }
  EXPECT_EQ(names.size(), 2u);  // both tools were chosen by some seed
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const json body =
        post(request({{"type", "function"}, {"function", {{"name", "get_time"}}}}, seed));
    expect_valid_call(body.at("choices").at(0).at("message").at("tool_calls").at(0), "get_time");
  }
  // Greedy is reproducible: the same call twice.
  json greedy = request("required", 1);
  greedy["temperature"] = 0;
  EXPECT_EQ(post(greedy).at("choices").at(0).at("message").at("tool_calls").at(0).at("function"),
            post(greedy).at("choices").at(0).at("message").at("tool_calls").at(0).at("function"));
}

TEST_F(ServeTools, AutoNoneHistoryStreamingAndTheHttpBackend) {
  // auto: a random model writes text, which stays text.
  json body = post(request("auto", 5));
  const json& message = body.at("choices").at(0).at("message");
  EXPECT_TRUE(message.at("content").is_string());
  EXPECT_FALSE(message.contains("tool_calls"));
  EXPECT_NE(body.at("choices").at(0).at("finish_reason"), "tool_calls");
  // none: the tools are not rendered (a shorter prompt).
  const json none = post(request("none", 5));
  EXPECT_LT(none.at("usage").at("prompt_tokens").get<int>(),
            body.at("usage").at("prompt_tokens").get<int>());
  // A conversation that carries a call and its result.
  json history = request("required", 2);
  history["messages"].push_back(
      {{"role", "assistant"},
       {"content", nullptr},
       {"tool_calls",
        {{{"id", "call_1"},
          {"type", "function"},
          {"function", {{"name", "get_time"}, {"arguments", "{\"zone\": \"CET\"}"}}}}}}});
  history["messages"].push_back(
      {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "12:00"}});
  int status = 0;
  body = post(history, &status);
  ASSERT_EQ(status, 200) << body.dump();
  expect_valid_call(body.at("choices").at(0).at("message").at("tool_calls").at(0));
  // Streaming: the calls come in one delta with their index, then finish_reason tool_calls.
  json streamed = request("required", 3);
  streamed["stream"] = true;
  httplib::Client http("127.0.0.1", server_->port());
  auto res = http.Post("/v1/chat/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  json calls, finish;
  for (size_t p = res->body.find("data: {"); p != std::string::npos;
       p = res->body.find("data: {", p + 1)) {
    const json chunk = json::parse(res->body.substr(p + 6, res->body.find("\n\n", p) - p - 6));
    const json& c = chunk.at("choices").at(0);
    if (c.at("delta").contains("tool_calls")) calls = c.at("delta").at("tool_calls");
    if (!c.at("finish_reason").is_null()) finish = c.at("finish_reason");
  }
  ASSERT_EQ(calls.size(), 1u) << res->body;
  EXPECT_EQ(calls.at(0).at("index"), 0);
  expect_valid_call(calls.at(0));
  EXPECT_EQ(finish, "tool_calls");
  // The same request as the non-streaming one gives the same call.
  streamed.erase("stream");
  EXPECT_EQ(post(streamed).at("choices").at(0).at("message").at("tool_calls").at(0).at("function"),
            calls.at(0).at("function"));
  // Through the HTTP backend: tools and tool_choice go out, tool_calls come back.
  HttpBackendOptions o;
  o.base_urls = {server_->base_url()};
  o.model = "llama-2-tiny-random";
  o.api_key_env = "";
  HttpBackend client(o);
  Request r;
  r.kind = RequestKind::chat;
  r.messages = {{"user", "What is the weather in Paris?"}};
  r.tools = kTools;
  r.tool_choice.mode = ToolChoice::Mode::function;
  r.tool_choice.function = "get_weather";
  r.params.max_tokens = 160;
  r.params.seed = 4;
  auto answer = client.submit_async(r).get();
  ASSERT_TRUE(answer.ok()) << answer.error().describe();
  const Choice& c = answer.value().choices.at(0);
  ASSERT_EQ(c.tool_calls.size(), 1u);
  EXPECT_EQ(c.tool_calls[0].name, "get_weather");
  EXPECT_EQ(c.finish_reason, "tool_calls");
  EXPECT_TRUE(json::accept(c.tool_calls[0].arguments));
  // `seqit query` request lines carry tools and tool_choice; answers carry tool_calls.
  seqit::testing::TempDir tmp;
  json line = request("required", 6);
  line["id"] = "q1";
  seqit::testing::spit(tmp / "in.jsonl", line.dump() + "\n");
  run_request_job(client, tmp / "in.jsonl", tmp / "out.jsonl", {});
  const json out = json::parse(seqit::testing::slurp(tmp / "out.jsonl"));
  ASSERT_TRUE(out.contains("tool_calls")) << out.dump();
  EXPECT_EQ(out.at("finish_reason"), "tool_calls");
  expect_valid_call(out.at("tool_calls").at(0));
}

TEST_F(ServeTools, BadToolRequestsAre400sNamingTheField) {
  int status = 0;
  json body = request({{"type", "function"}, {"function", {{"name", "get_date"}}}}, 1);
  EXPECT_NE(post(body, &status).dump().find("no tool is named \\\"get_date\\\""),
            std::string::npos);
  EXPECT_EQ(status, 400);
  body = request("required", 1);
  body["tools"][0]["function"].erase("name");
  EXPECT_NE(post(body, &status).dump().find("tools[0].function.name"), std::string::npos);
  EXPECT_EQ(status, 400);
  body = request("sometimes", 1);
  EXPECT_NE(post(body, &status).dump().find("tool_choice"), std::string::npos);
  EXPECT_EQ(status, 400);
}

// A model whose template has no tools (stories260K, plain format) refuses them with a 400.
TEST(ServeToolsRefused, ATemplateWithoutToolsIsA400) {
  ServeProcess plain({"--model", shared_data("models/stories260K/stories260K.bin").string(),
                      "--tokenizer", shared_data("models/stories260K/tok512.bin").string(),
                      "--chat-template", "tulu"});
  httplib::Client http("127.0.0.1", plain.port());
  json body = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
               {"tools", json::parse(kTools)},
               {"max_tokens", 4}};
  auto res = http.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("does not render tools"), std::string::npos) << res->body;
  body["tool_choice"] = "none";  // tools sent but not used: fine
  res = http.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

}  // namespace
}  // namespace seqit::llm
