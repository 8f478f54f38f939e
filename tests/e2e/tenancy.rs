//! End-to-end tests of tenancy (being written).
