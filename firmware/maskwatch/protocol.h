// maskwatch serial protocol: the parser the Arduino sketch (maskwatch.ino) uses.
//
// The host (maskwatch/serial_link.py) sends one line per message, ASCII:
//
//     X<x>Y<y>\n      x, y: servo angles in integer degrees, 0..180 (e.g. "X138Y30\n")
//     X0Y0\n          everyone is masked, or nobody is there
//
// "\r\n" line ends are accepted too. A line is accepted only if it is exactly that: 'X', 1 to 3 digits,
// 'Y', 1 to 3 digits, optional '\r', '\n'. Anything else (garbage, a partial line left over from a reset,
// missing parts, a number with more than 3 digits, a value above 180, spaces, signs) rejects the whole line:
// the parser skips to the next '\n' and keeps the last good angles. No buffer: memory use is constant however
// long a line is.
//
// Plain C++11 with no headers at all (no Arduino.h, no standard library), so the same file builds for the AVR
// and on the host, where firmware/test_protocol.cpp tests it with g++.

#ifndef MASKWATCH_PROTOCOL_H
#define MASKWATCH_PROTOCOL_H

namespace maskwatch {

const int kAngleMin = 0;
const int kAngleMax = 180;
const int kMaxDigits = 3;  // 180 needs 3; "0180" is rejected as overlong

class Parser {
 public:
  Parser() : state_(kStart), x_(0), y_(0), pending_x_(0), pending_y_(0), digits_(0), accepted_(0), rejected_(0) {}

  // Feed one received byte. Returns true when it completed a valid line; x() and y() then hold its angles.
  bool feed(char c) {
    if (c == '\n') {
      bool ok = (state_ == kYDigits || state_ == kCr) && digits_ > 0;
      bool empty = (state_ == kStart || state_ == kEmptyCr);  // a blank line ("\n" or "\r\n") is no error
      if (ok) {
        x_ = pending_x_;
        y_ = pending_y_;
        ++accepted_;
      } else if (!empty) {
        ++rejected_;
      }
      reset_line();
      return ok;
    }
    switch (state_) {
      case kStart:
        if (c == 'X') {
          state_ = kXDigits;
        } else if (c == '\r') {
          state_ = kEmptyCr;
        } else {
          state_ = kSkip;
        }
        break;
      case kXDigits:
        if (is_digit(c)) {
          add_digit(pending_x_, c);
        } else if (c == 'Y' && digits_ > 0) {
          state_ = kYDigits;
          digits_ = 0;
        } else {
          state_ = kSkip;
        }
        break;
      case kYDigits:
        if (is_digit(c)) {
          add_digit(pending_y_, c);
        } else if (c == '\r' && digits_ > 0) {
          state_ = kCr;
        } else {
          state_ = kSkip;
        }
        break;
      case kCr:  // only '\n' may follow a '\r'
      case kEmptyCr:
      case kSkip:
        state_ = kSkip;
        break;
    }
    return false;
  }

  int x() const { return x_; }                          // last accepted x angle, degrees (0 before any)
  int y() const { return y_; }                          // last accepted y angle, degrees (0 before any)
  unsigned long accepted() const { return accepted_; }  // valid lines so far
  unsigned long rejected() const { return rejected_; }  // lines thrown away so far

 private:
  enum State { kStart, kXDigits, kYDigits, kCr, kEmptyCr, kSkip };

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  void add_digit(int &value, char c) {
    if (++digits_ > kMaxDigits) {
      state_ = kSkip;
      return;
    }
    value = value * 10 + (c - '0');  // at most 999: no overflow even with a 16-bit int
    if (value > kAngleMax) state_ = kSkip;
  }

  void reset_line() {
    state_ = kStart;
    pending_x_ = 0;
    pending_y_ = 0;
    digits_ = 0;
  }

  State state_;
  int x_, y_;
  int pending_x_, pending_y_;
  int digits_;
  unsigned long accepted_, rejected_;
};

// What the turret does with the parsed lines: the LED and the two servo angles. Kept here, beside the parser and
// free of Arduino headers, so the host test covers it too.
//
//   - A line with x != 0 aims both servos at (x, y) and lights the LED.
//   - "X0Y0" (everyone masked, nobody there) puts the LED out; the servos stay where they are (no swing to a
//     corner between two people).
//   - No valid line for kSilenceMs (the host died, hung or was unplugged; it sends about every 200 ms): the LED goes
//     out, so it never stays lit for ever. The servos stay.
//   - At power-up the servos point straight ahead (kParkAngle, kParkAngle) and the LED is off.
// Times are millis() values; the unsigned difference handles their wrap after about 49.7 days.
const unsigned long kSilenceMs = 1500;
const int kParkAngle = 90;

class Turret {
 public:
  Turret() : pan_(kParkAngle), tilt_(kParkAngle), led_(false), last_ms_(0) {}

  // A valid line (x, y) received at now_ms.
  void line(int x, int y, unsigned long now_ms) {
    last_ms_ = now_ms;
    if (x != 0) {
      pan_ = x;
      tilt_ = y;
      led_ = true;
    } else {
      led_ = false;
    }
  }

  // Call on every pass of loop(). Returns true when the LED has just gone out for silence.
  bool tick(unsigned long now_ms) {
    if (led_ && ((now_ms - last_ms_) & 0xFFFFFFFFUL) >= kSilenceMs) {  // (the mask: millis() is 32-bit, as on AVR)
      led_ = false;
      return true;
    }
    return false;
  }

  int pan() const { return pan_; }    // degrees, 0..180
  int tilt() const { return tilt_; }  // degrees, 0..180
  bool led() const { return led_; }

 private:
  int pan_, tilt_;
  bool led_;
  unsigned long last_ms_;
};

}  // namespace maskwatch

#endif  // MASKWATCH_PROTOCOL_H
