// Host-side test of the Arduino sketch's protocol parser (firmware/maskwatch/protocol.h).
//
//   g++ -std=c++17 -Wall -Werror -I firmware firmware/test_protocol.cpp -o /tmp/test_protocol && /tmp/test_protocol
//
// tests/test_firmware.py compiles and runs it. Prints "N passed, M failed" and exits non-zero on a failure.

#include <cstdio>
#include <cstring>

#include "maskwatch/protocol.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (cond) {                                                            \
      ++passed;                                                            \
    } else {                                                               \
      ++failed;                                                            \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
    }                                                                      \
  } while (0)

// Feeds every byte of text (len bytes; text may hold '\0'); returns how many valid lines completed.
static int feed(maskwatch::Parser &p, const char *text, size_t len) {
  int lines = 0;
  for (size_t i = 0; i < len; ++i) {
    if (p.feed(text[i])) ++lines;
  }
  return lines;
}

static int feed(maskwatch::Parser &p, const char *text) { return feed(p, text, std::strlen(text)); }

static void test_valid_lines() {
  maskwatch::Parser p;
  CHECK(p.x() == 0 && p.y() == 0);
  CHECK(feed(p, "X90Y45\n") == 1);
  CHECK(p.x() == 90 && p.y() == 45);
  CHECK(feed(p, "X138Y30\n") == 1);
  CHECK(p.x() == 138 && p.y() == 30);
  CHECK(feed(p, "X180Y180\n") == 1);
  CHECK(p.x() == 180 && p.y() == 180);
  CHECK(feed(p, "X0Y0\n") == 1);  // everyone masked
  CHECK(p.x() == 0 && p.y() == 0);
  CHECK(feed(p, "X7Y007\n") == 1);  // leading zeros within 3 digits
  CHECK(p.x() == 7 && p.y() == 7);
  CHECK(feed(p, "X1Y2\nX3Y4\nX5Y6\n") == 3);
  CHECK(p.x() == 5 && p.y() == 6);
  CHECK(p.accepted() == 8 && p.rejected() == 0);
}

static void test_feed_returns_true_only_on_the_newline() {
  maskwatch::Parser p;
  const char *line = "X12Y34\n";
  for (size_t i = 0; i + 1 < std::strlen(line); ++i) CHECK(!p.feed(line[i]));
  CHECK(p.x() == 0 && p.y() == 0);  // nothing applied before the '\n'
  CHECK(p.feed('\n'));
  CHECK(p.x() == 12 && p.y() == 34);
}

static void test_split_lines() {
  maskwatch::Parser p;
  CHECK(feed(p, "X1") == 0);
  CHECK(feed(p, "00") == 0);
  CHECK(feed(p, "Y") == 0);
  CHECK(feed(p, "5") == 0);
  CHECK(p.x() == 0 && p.y() == 0);
  CHECK(feed(p, "0\nX2") == 1);
  CHECK(p.x() == 100 && p.y() == 50);
  CHECK(feed(p, "0Y3\r") == 0);
  CHECK(feed(p, "\n") == 1);
  CHECK(p.x() == 20 && p.y() == 3);
}

static void test_crlf() {
  maskwatch::Parser p;
  CHECK(feed(p, "X90Y45\r\n") == 1);
  CHECK(p.x() == 90 && p.y() == 45);
  CHECK(feed(p, "X10Y20\r\nX30Y40\n") == 2);
  CHECK(p.x() == 30 && p.y() == 40);
  CHECK(feed(p, "X10Y20\r\r\n") == 0);  // only one '\r', right before the '\n'
  CHECK(feed(p, "X10\rY20\n") == 0);
  CHECK(p.x() == 30 && p.y() == 40);
  CHECK(feed(p, "\r\n\n") == 0);  // blank lines: ignored, not counted as rejected
  CHECK(p.rejected() == 2);
}

static void test_garbage() {
  maskwatch::Parser p;
  CHECK(feed(p, "hello\nX90Y45\n") == 1);  // garbage line, then a valid one
  CHECK(p.x() == 90 && p.y() == 45);
  static const char noise[] = "\x00\xff\x13garbage!!\nX11Y22\n";  // binary noise (as after a reset)
  CHECK(feed(p, noise, sizeof noise - 1) == 1);
  CHECK(p.x() == 11 && p.y() == 22);
  CHECK(feed(p, "0Y45\nX12Y13\n") == 1);  // the tail of a line cut in half, then a valid one
  CHECK(p.x() == 12 && p.y() == 13);
  CHECK(feed(p, "junkX50Y60\n") == 0);  // garbage on the same line rejects the line
  CHECK(feed(p, "X50Y60junk\n") == 0);
  CHECK(feed(p, "XX50Y60\n") == 0);
  CHECK(feed(p, "X50YY60\n") == 0);
  CHECK(feed(p, "X50Y60X70Y80\n") == 0);
  CHECK(feed(p, "x50y60\n") == 0);  // lower case
  CHECK(feed(p, "X 50Y60\n") == 0);
  CHECK(feed(p, "X+50Y60\n") == 0);
  CHECK(p.x() == 12 && p.y() == 13);  // state kept through all of it
  CHECK(feed(p, "X1Y2\n") == 1);  // and still parses afterwards
  CHECK(p.x() == 1 && p.y() == 2);
}

static void test_missing_parts() {
  maskwatch::Parser p;
  CHECK(feed(p, "X40Y50\n") == 1);
  CHECK(feed(p, "X\n") == 0);
  CHECK(feed(p, "X10\n") == 0);
  CHECK(feed(p, "X10Y\n") == 0);
  CHECK(feed(p, "XY10\n") == 0);
  CHECK(feed(p, "Y10\n") == 0);
  CHECK(feed(p, "Y10X10\n") == 0);
  CHECK(feed(p, "10\n") == 0);
  CHECK(feed(p, "X10Y\r\n") == 0);
  CHECK(p.x() == 40 && p.y() == 50);
  CHECK(p.rejected() == 8);
}

static void test_out_of_range() {
  maskwatch::Parser p;
  CHECK(feed(p, "X40Y50\n") == 1);
  CHECK(feed(p, "X181Y50\n") == 0);
  CHECK(feed(p, "X40Y181\n") == 0);
  CHECK(feed(p, "X999Y999\n") == 0);
  CHECK(feed(p, "X-1Y50\n") == 0);
  CHECK(feed(p, "X40Y-5\n") == 0);
  CHECK(p.x() == 40 && p.y() == 50);
  CHECK(feed(p, "X180Y0\n") == 1);  // the edges are fine
  CHECK(p.x() == 180 && p.y() == 0);
}

static void test_overlong() {
  maskwatch::Parser p;
  CHECK(feed(p, "X40Y50\n") == 1);
  CHECK(feed(p, "X0090Y45\n") == 0);  // 4 digits
  CHECK(feed(p, "X90Y0045\n") == 0);
  CHECK(feed(p, "X99999999999999999999Y1\n") == 0);  // would overflow an int
  CHECK(p.x() == 40 && p.y() == 50);
  // A very long line with no newline for a while: constant memory, rejected, then back in step.
  bool completed = false;
  for (int i = 0; i < 100000; ++i) completed = p.feed(i % 2 ? '9' : 'X') || completed;
  CHECK(!completed);
  CHECK(feed(p, "\nX33Y44\n") == 1);
  CHECK(p.x() == 33 && p.y() == 44);
}

static void test_turret() {
  maskwatch::Turret t;
  CHECK(t.pan() == 90 && t.tilt() == 90 && !t.led());  // power-up: straight ahead, dark
  t.line(120, 40, 1000);
  CHECK(t.pan() == 120 && t.tilt() == 40 && t.led());
  CHECK(!t.tick(2000) && t.led());  // 1.0 s of silence: still aimed and lit
  t.line(0, 0, 2100);  // everyone masked: dark, but the servos do not swing to a corner
  CHECK(!t.led() && t.pan() == 120 && t.tilt() == 40);
  t.line(60, 100, 2300);
  CHECK(t.led() && !t.tick(3799));
  CHECK(t.tick(3800) && !t.led() && t.pan() == 60);  // 1.5 s without a valid line: the host is gone, LED out
  CHECK(!t.tick(9000));  // said once
  t.line(70, 80, 0xFFFFFE00UL);  // millis() about to wrap (after 49.7 days)
  CHECK(!t.tick(0x00000100UL) && t.led());  // 768 ms later, across the wrap: still lit
  CHECK(t.tick(0x00000400UL) && !t.led());  // 1536 ms later: out
}

int main() {
  test_valid_lines();
  test_feed_returns_true_only_on_the_newline();
  test_split_lines();
  test_crlf();
  test_garbage();
  test_missing_parts();
  test_out_of_range();
  test_overlong();
  test_turret();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
