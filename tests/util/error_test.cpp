#include <gtest/gtest.h>

#include "util/error.h"

using seqit::Error;
using seqit::ErrorContext;

TEST(Error, FormatsEveryKnownPartOfTheLocation) {
  Error e =
      Error("missing field").in_file("data.jsonl").at_line(12, 5).at_record(11).in_field("output");
  EXPECT_STREQ(e.what(), "data.jsonl:12:5: record 11, field 'output': missing field");
  EXPECT_EQ(e.message(), "missing field");
  EXPECT_EQ(e.context().line, 12);
}

TEST(Error, WithoutContextIsJustTheMessage) {
  EXPECT_STREQ(Error("boom").what(), "boom");
  EXPECT_STREQ(Error("boom").at_record(0).what(), "record 0: boom");
}

TEST(Error, OuterContextFillsOnlyWhatIsMissing) {
  Error e = Error("bad value").in_field("input");
  e.add_context(ErrorContext{"a.json", 3, 0, 7, "ignored"});
  EXPECT_STREQ(e.what(), "a.json:3: record 7, field 'input': bad value");
}
