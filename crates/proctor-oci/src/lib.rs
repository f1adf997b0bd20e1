//! Multi-arch processor images, from source to a pin in `registry.yaml`:
//!
//! 1. [`build`] cross-compiles the processor's static binary for linux/amd64 and linux/arm64
//!    and writes byte-reproducible single-layer OCI images plus an image index to an OCI
//!    image layout directory ([`layout_dir`]) — no container engine needed;
//! 2. [`push`] uploads that layout to a distribution registry under
//!    `HOST/OWNER/REPO/<ns>-<name>` ([`RegistryTarget`]), tagged with the processor version;
//! 3. [`pin`] reads the index back, checks both platforms resolve, and writes the digests into
//!    the processor's `registry.yaml`, changing nothing else in the file.
//!
//! [`build_docker_archive`] compiles and assembles one platform's image with the same code as
//! [`build`] and packs it for `docker load`: that is how `proctor run --build` runs the very
//! image, config digest included, that `build` writes for the host platform.
//!
//! **Architecture Invariant:** this crate talks to registries through the distribution API
//! (oci-client) and to cargo; it never drives a container engine and never prints: it reports progress
//! through the caller's [`proctor_contract::Progress`]. Credentials are never logged.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod builder;
mod compile;
mod credentials;
mod docker_archive;
mod image;
mod layout;
mod pin;
mod pin_file;
mod platform;
mod push;
mod remote;
mod target;

pub use builder::{
    ArchiveRequest, BuildRequest, BuiltImage, BuiltPlatform, DockerArchive, build,
    build_docker_archive,
};
pub use credentials::{
    CredentialSource, PASSWORD_ENV, RegistryCredential, USERNAME_ENV, registry_credential,
};
pub use image::REF_LABEL;
pub use layout::layout_dir;
pub use pin::{IndexReference, IndexSource, Pins, pin, resolve_pins};
pub use push::{PushedImage, push};
pub use target::{InvalidRegistry, RegistryTarget};
