//! Local doubles of the hub's peers (Twilio, Gemini), behaving as those services document:
//! `sync-server demo` runs them on loopback so a newcomer sees each integration work without an
//! account anywhere, and the tests hold the real clients to them (the same contract suites run
//! against the real services when their credentials are given).

pub mod gemini;
pub mod twilio;
