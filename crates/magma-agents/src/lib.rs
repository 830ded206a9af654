//! Web and robot agents.
