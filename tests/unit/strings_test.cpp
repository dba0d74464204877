#include <gtest/gtest.h>

#include "util/strings.h"

using namespace llamactl;

TEST(Strings, SplitLinesAcceptsCrlfAndNoFinalNewline) {
  const auto lines = split_lines("a\r\nb\nc");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "a");
  EXPECT_EQ(lines[1], "b");
  EXPECT_EQ(lines[2], "c");
  EXPECT_TRUE(split_lines("").empty());
}

TEST(Strings, UnknownTokensAreNeverZero) {
  for (const char* t :
       {"[N/A]", "[Not Supported]", "[Insufficient Permissions]", "[Unknown Error]", "[Function Not Found]",
        "[Requested functionality has been deprecated]", "N/A", "ERR!", "-", ""}) {
    EXPECT_TRUE(is_unknown_token(t)) << t;
    EXPECT_FALSE(parse_mib(t).has_value()) << t;
    EXPECT_FALSE(parse_percent(t).has_value()) << t;
  }
}

TEST(Strings, ParsesMemoryWithAndWithoutUnits) {
  EXPECT_EQ(parse_mib("4111"), 4111);
  EXPECT_EQ(parse_mib(" 4111 MiB "), 4111);
  EXPECT_EQ(parse_mib("4111MiB"), 4111);
  EXPECT_EQ(parse_mib("2 GiB"), 2048);
  EXPECT_EQ(parse_mib("14MB"), 14);  // driver 325 tables said MB
  EXPECT_FALSE(parse_mib("12x").has_value());
  EXPECT_FALSE(parse_mib("-5").has_value());
  EXPECT_EQ(parse_percent("37 %"), 37);
  EXPECT_FALSE(parse_percent("101").has_value());
}

TEST(Strings, BasenameOfBothSeparators) {
  EXPECT_EQ(basename_any("/usr/lib/xorg/Xorg"), "Xorg");
  EXPECT_EQ(basename_any("C:\\Windows\\System32\\dwm.exe"), "dwm.exe");
  EXPECT_EQ(basename_any("python3"), "python3");
}

TEST(Strings, ParseIntIsWholeString) {
  EXPECT_EQ(parse_int(" 42 "), 42);
  EXPECT_FALSE(parse_int("42abc").has_value());
  EXPECT_FALSE(parse_int("").has_value());
}

TEST(Strings, EditDistanceCountsSwapsAsOneEdit) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("load", ""), 4u);
  EXPECT_EQ(edit_distance("lod", "load"), 1u);
  EXPECT_EQ(edit_distance("qwne", "qwen"), 1u);  // a swap, not two replacements
  EXPECT_EQ(edit_distance("QWEN", "qwen"), 0u);  // model names are matched without case
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("gpus", "status"), 4u);
}

TEST(Strings, NearestSuggestsOnlyCloseNames) {
  const std::vector<std::string> commands{"gpus", "load", "unload", "status", "serve", "watch", "mcp", "complete"};
  EXPECT_EQ(nearest("lod", commands), "load");
  EXPECT_EQ(nearest("unlod", commands), "unload");
  EXPECT_EQ(nearest("stauts", commands), "status");
  EXPECT_EQ(nearest("sevre", commands), "serve");
  EXPECT_FALSE(nearest("frobnicate", commands).has_value());
  EXPECT_FALSE(nearest("xy", commands).has_value());
  EXPECT_FALSE(nearest("lod", {}).has_value());
  // "gpuu" is one edit from both; the earlier candidate wins the tie.
  EXPECT_EQ(nearest("gpuu", {"gpu", "gpus"}), "gpu");
  EXPECT_EQ(nearest("gpuu", {"gpus", "gpu"}), "gpus");
}

TEST(Strings, PrintableShowsControlCharactersAsQuestionMarks) {
  EXPECT_EQ(printable("evil\x1b]0;pwned\x07\x1b[2J"), "evil?]0;pwned??[2J");
  EXPECT_EQ(printable("a\x7f"
                      "b\r\n\tc"),
            "a?b???c");
  EXPECT_EQ(printable("tail:\n\tline\x1b[31m", true), "tail:\n\tline?[31m");
  EXPECT_EQ(printable("NVIDIA GeForce RTX 2080 SUPER — ok"), "NVIDIA GeForce RTX 2080 SUPER — ok");  // UTF-8 stays
}
