//! Test doubles: the simulated storage with fault injection, and shared fixtures.

pub mod sim;
