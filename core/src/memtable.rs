//! memtable (in progress).
