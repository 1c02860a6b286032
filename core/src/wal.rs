//! wal (in progress).
