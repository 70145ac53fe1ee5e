//! The few git operations everything shares.
