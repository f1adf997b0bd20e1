//! Depended on by every workspace package so that each third-party crate is built with
//! one feature set, whichever packages a build selects (`.config/hakari.toml`). No code.
