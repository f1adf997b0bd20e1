//! The processor registry: one `registry.yaml` per processor version under
//! `processors/<ns>/<name>/<version>/`, loaded strictly (unknown keys are refused).

mod spec;

pub use spec::{Build, Example, Image, OutputDecl, Platforms, ProcessorSpec, Runtime, Secrets};
