//! The proctor command-line interface.
fn main() {}
