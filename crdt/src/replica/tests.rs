//! Unit tests of the replica.
