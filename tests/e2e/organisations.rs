//! End-to-end tests of organisations (being written).
