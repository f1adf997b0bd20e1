//! The llm/planner@1 processor binary.

// The package's dependencies serve its library; this is the thin main.
#![allow(unused_crate_dependencies)]

fn main() -> std::process::ExitCode {
    proctor_sdk::serve_main(processor_llm_planner::definition())
}
