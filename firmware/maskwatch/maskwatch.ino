// maskwatch turret: points two servos at the most urgent unmasked face that maskwatch finds and lights a LED
// while there is one. The host runs maskwatch with `--serial PORT` (maskwatch/serial_link.py).
//
// Wiring (Arduino Uno or Nano; any board with the Servo library):
//
//   pan servo  (x)  signal -> pin 11    red -> 5 V (external supply for bigger servos)    brown/black -> GND
//   tilt servo (y)  signal -> pin 10    red -> 5 V                                        brown/black -> GND
//   LED             pin 12 -> 220 ohm resistor -> LED anode (long leg); LED cathode -> GND
//   USB             to the computer running maskwatch (the serial port, 9600 baud)
//
// With an external servo supply, join its GND to the Arduino's GND.
//
// Protocol (see protocol.h): one line per message, "X<x>Y<y>\n" (or "\r\n"), angles in integer degrees
// 0..180, about every 200 ms. "X0Y0\n" means everyone is masked or nobody is there: the LED goes off.
// After each valid line both servos move to the angles, and the LED is on when x != 0, off when x == 0.
// Garbage, partial lines and out-of-range values are ignored: the servos keep their last good position.
//
// Build: Arduino IDE or `arduino-cli compile --fqbn arduino:avr:uno firmware/maskwatch`. The parser is
// tested on the host with g++ (firmware/test_protocol.cpp, run by tests/test_firmware.py).

#include <Servo.h>

#include "protocol.h"

const int PIN_SERVO_X = 11;
const int PIN_SERVO_Y = 10;
const int PIN_LED = 12;
const long BAUD = 9600;

Servo servoX;
Servo servoY;
maskwatch::Parser parser;

// Move the servos to (x, y) degrees and set the LED: on while there is a target (x != 0).
void applyTarget(int x, int y) {
  servoX.write(x);
  servoY.write(y);
  digitalWrite(PIN_LED, x != 0 ? HIGH : LOW);
}

void setup() {
  pinMode(PIN_LED, OUTPUT);
  servoX.attach(PIN_SERVO_X);
  servoY.attach(PIN_SERVO_Y);
  applyTarget(parser.x(), parser.y());  // start idle: (0, 0), LED off
  Serial.begin(BAUD);
}

void loop() {
  while (Serial.available() > 0) {
    int c = Serial.read();
    if (c < 0) break;
    if (parser.feed(static_cast<char>(c))) {
      applyTarget(parser.x(), parser.y());
    }
  }
}
