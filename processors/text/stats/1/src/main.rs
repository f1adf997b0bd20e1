//! The text/stats@1 processor.
fn main() {}
