//! The llm/litellm@1 processor binary.

fn main() -> std::process::ExitCode {
    proctor_sdk::serve_main(processor_llm_litellm::definition())
}
