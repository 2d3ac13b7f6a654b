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
// 0..180, about every 200 ms. After a line with x != 0 both servos move to the angles and the LED is on.
// "X0Y0\n" means everyone is masked or nobody is there: the LED goes off and the servos stay where they are.
// No valid line for 1.5 s (the computer died, hung or was unplugged): the LED goes off too, so it never stays
// lit for ever. Garbage, partial lines and out-of-range values are ignored. At power-up the servos point straight
// ahead (90, 90) and the LED is off.
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
maskwatch::Turret turret;

// Move the servos and set the LED as the turret says.
void apply() {
  servoX.write(turret.pan());
  servoY.write(turret.tilt());
  digitalWrite(PIN_LED, turret.led() ? HIGH : LOW);
}

void setup() {
  pinMode(PIN_LED, OUTPUT);
  servoX.attach(PIN_SERVO_X);
  servoY.attach(PIN_SERVO_Y);
  apply();  // straight ahead, LED off
  Serial.begin(BAUD);
}

void loop() {
  while (Serial.available() > 0) {
    int c = Serial.read();
    if (c < 0) break;
    if (parser.feed(static_cast<char>(c))) {
      turret.line(parser.x(), parser.y(), millis());
      apply();
    }
  }
  if (turret.tick(millis())) apply();  // silence: the LED goes out
}
