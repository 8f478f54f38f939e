//! End-to-end tests of portal (being written).
