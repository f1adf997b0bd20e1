//! The processor registry: registry.yaml files, input schemas, pins and secrets.
