//! Placeholder: the simulated storage is written in its own change.
