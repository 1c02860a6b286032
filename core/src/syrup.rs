//! syrup (in progress).
