#include <gtest/gtest.h>

#include "util/duration.h"

using namespace llamactl;

TEST(Duration, OllamaForms) {
  EXPECT_EQ(*parse_duration_ms("5m"), 300000);
  EXPECT_EQ(*parse_duration_ms("1h30m"), 5400000);
  EXPECT_EQ(*parse_duration_ms("90s"), 90000);
  EXPECT_EQ(*parse_duration_ms("300"), 300000);  // bare number: seconds
  EXPECT_EQ(*parse_duration_ms("0"), 0);
  EXPECT_EQ(*parse_duration_ms("-1"), kNever);
  EXPECT_EQ(*parse_duration_ms("-5m"), kNever);
  EXPECT_EQ(*parse_duration_ms("250ms"), 250);
  EXPECT_EQ(*parse_duration_ms("1.5h"), 5400000);
}

TEST(Duration, RejectsGarbage) {
  for (const char* bad : {"", "m", "5x", "five minutes", "5m3", "--1"})
    EXPECT_FALSE(parse_duration_ms(bad).ok()) << bad;
}

TEST(Duration, Formats) {
  EXPECT_EQ(format_duration_ms(300000), "5m");
  EXPECT_EQ(format_duration_ms(5400000), "1h30m");
  EXPECT_EQ(format_duration_ms(kNever), "never");
  EXPECT_EQ(format_duration_ms(0), "0s");
}
