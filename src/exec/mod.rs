//! The command gate (work in progress).
