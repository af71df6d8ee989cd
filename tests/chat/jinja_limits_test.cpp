// Issue 17: templates are data from a model folder; none may crash or hang the process. Each case
// below overflowed the stack, ran for hours or wrapped an integer before the render budgets.
#include <gtest/gtest.h>

#include <string>

#include "chat/jinja.h"
#include "util/error.h"

namespace seqit::chat::jinja {
namespace {

std::string render(const std::string& source,
                   std::vector<std::pair<std::string, Value>> vars = {}) {
  return Template::parse(source, "t.jinja").render(vars, RenderSettings{}).text;
}

// The error's text (with its location), or "" when the template rendered.
std::string error_of(const std::string& source,
                     std::vector<std::pair<std::string, Value>> vars = {}) {
  try {
    render(source, std::move(vars));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JinjaLimits, SelfCallingMacroIsAnErrorNotAStackOverflow) {
  const std::string e = error_of("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}");
  EXPECT_NE(e.find("nests deeper than"), std::string::npos) << e;
  EXPECT_NE(e.find("t.jinja:1:"), std::string::npos) << e;
  // Recursion that ends is fine.
  EXPECT_EQ(
      render(
          "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}"),
      "54321");
}

TEST(JinjaLimits, EndlessRecursiveLoopIsAnError) {
  std::vector<Value> one;
  one.push_back(Value(int64_t(1)));
  const std::string e =
      error_of("{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
               {{"messages", Value::list(one)}});
  EXPECT_NE(e.find("nests deeper than"), std::string::npos) << e;
}

TEST(JinjaLimits, DeeplyNestedExpressionsAreParseErrors) {
  const std::string parens =
      "{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}";
  EXPECT_NE(error_of(parens).find("nested deeper than"), std::string::npos);
  std::string nots = "{{ ";
  for (int i = 0; i < 10000; ++i) nots += "not ";
  EXPECT_NE(error_of(nots + "true }}").find("nested deeper than"), std::string::npos);
  // Ordinary nesting is fine.
  EXPECT_EQ(render("{{ ((((1 + 2) * 3) - 4) // 5) }}"), "1");
}

TEST(JinjaLimits, HugeRepetitionAndEndlessLoopsStop) {
  const std::string big = error_of("{{ \"aaaaaaaaaa\" * 10000000000 }}");
  EXPECT_NE(big.find("over the limit"), std::string::npos) << big;
  EXPECT_NE(error_of("{{ [1, 2] * 100000000000 }}").find("over the limit"), std::string::npos);
  EXPECT_EQ(render("{{ 'ab' * 3 }}|{{ 'x' * -2 }}|{{ [1] * 2 }}"), "ababab||[1, 1]");
  const std::string loops =
      error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  EXPECT_NE(loops.find("loop iterations"), std::string::npos) << loops;
}

TEST(JinjaLimits, IntegersNeverWrap) {
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ -9223372036854775807 - 2 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ 4294967296 * 4294967296 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{{ 2 ** 64 }}").find("integer overflow"), std::string::npos);
  // A huge exponent ends at once (it used to multiply 10^12 times).
  EXPECT_NE(error_of("{{ 3 ** 1000000000000 }}").find("integer overflow"), std::string::npos);
  EXPECT_EQ(render("{{ 2 ** 62 }} {{ (-1) ** 1000000000001 }} {{ 1 ** 999999999999 }}"),
            "4611686018427387904 -1 1");
  EXPECT_EQ(render("{{ 9223372036854775806 + 1 }}"), "9223372036854775807");
}

}  // namespace
}  // namespace seqit::chat::jinja
