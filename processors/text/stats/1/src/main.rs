//! The text/stats@1 processor binary.

fn main() -> std::process::ExitCode {
    proctor_sdk::serve_main(processor_text_stats::definition())
}
