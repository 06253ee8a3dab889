"""Durable due rows, the working calendar and deadline arithmetic, shared by work orders and
flood season. Other domains use `timers.service`, `timers.deadlines` and `timers.calendar`;
see docs/deadlines.md for the rules."""
