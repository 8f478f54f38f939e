//! End-to-end tests of cli (being written).
