//! The llm/litellm@1 processor.
fn main() {}
