//! Arguments of the processor author's commands, `conform` and `new`, and the validated
//! configurations they become. Pure, like the rest of the argument parsing.

use clap::{ArgGroup, Args, ValueEnum};
use proctor_conform::ImageChoice;
use proctor_conform::scaffold::Lang;
use serde_json::Value;

use super::{Globals, OutputFormat, RegistryRootArg, parse_json_object, parse_key_value};

/// `proctor conform`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("image_source").args(["image", "build"])))]
pub(super) struct ConformArgs {
    /// The processor, `ns/name@version`.
    #[arg(value_name = "REF")]
    processor_ref: String,
    /// Check this image instead of the pinned one: a pinned reference
    /// `REGISTRY/REPO@sha256:…`, or a local image's name, tag or ID.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Build the image from source, as `proctor run --build` does.
    #[arg(long)]
    build: bool,
    /// A build argument of a Dockerfile build (repeatable), e.g.
    /// `BASE_IMAGE=proctor-python-base:bookworm`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE", requires = "build", value_parser = parse_key_value)]
    build_args: Vec<(String, String)>,
    /// The example of `registry.yaml` whose inputs the runs use.
    #[arg(long, value_name = "NAME", default_value = "smoke")]
    example: String,
    /// Inputs to use instead of the example's, as JSON text.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object, conflicts_with = "example")]
    inputs_json: Option<Value>,
    #[command(flatten)]
    registry_root: RegistryRootArg,
}

/// A language of `proctor new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LangArg {
    Rust,
    Python,
}

/// `proctor new`.
#[derive(Debug, Args)]
pub(super) struct NewArgs {
    /// The new processor, `ns/name@version`.
    #[arg(value_name = "REF")]
    processor_ref: String,
    /// The language it is written in.
    #[arg(long, value_enum)]
    lang: LangArg,
    #[command(flatten)]
    registry_root: RegistryRootArg,
}

/// A validated `proctor conform`.
#[derive(Debug, Clone)]
pub(crate) struct ConformConfig {
    pub(crate) request: proctor_conform::ConformRequest,
    pub(crate) format: OutputFormat,
}

/// A validated `proctor new`.
#[derive(Debug, Clone)]
pub(crate) struct NewConfig {
    pub(crate) request: proctor_conform::scaffold::NewRequest,
    pub(crate) format: OutputFormat,
}

impl ConformArgs {
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<ConformConfig> {
        let registry_root = self.registry_root.resolve(globals)?;
        let image = match (self.image, self.build) {
            (Some(image), _) => ImageChoice::Image(image),
            (None, true) => ImageChoice::Build {
                workspace_root: globals.cargo_workspace(&registry_root),
            },
            (None, false) => ImageChoice::Pinned,
        };
        Ok(ConformConfig {
            request: proctor_conform::ConformRequest {
                registry_root,
                processor_ref: self.processor_ref,
                image,
                example: self.example,
                inputs: self.inputs_json,
                build_args: self.build_args.into_iter().collect(),
            },
            format: globals.format,
        })
    }
}

impl NewArgs {
    pub(super) fn into_config(self, globals: &Globals) -> anyhow::Result<NewConfig> {
        let registry_root = self.registry_root.resolve(globals)?;
        Ok(NewConfig {
            request: proctor_conform::scaffold::NewRequest {
                processor_ref: self.processor_ref,
                lang: match self.lang {
                    LangArg::Rust => Lang::Rust,
                    LangArg::Python => Lang::Python,
                },
                workspace_root: globals.cargo_workspace(&registry_root),
                registry_root,
            },
            format: globals.format,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Config};
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let argv = std::iter::once("proctor").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.into_config().unwrap())
    }

    #[test]
    fn conform_chooses_the_pinned_image_unless_told_otherwise() {
        let image = |extra: &[&str]| {
            let mut args = vec!["conform", "text/stats@1"];
            args.extend_from_slice(extra);
            match parse(&args).unwrap() {
                Config::Conform(config) => config.request.image,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(image(&[]), ImageChoice::Pinned);
        match parse(&["conform", "a/b@1", "--build", "--build-arg", "BASE_IMAGE=x"]).unwrap() {
            Config::Conform(config) => assert_eq!(
                config.request.build_args,
                [("BASE_IMAGE".to_owned(), "x".to_owned())].into()
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(image(&["--image", "x:1"]), ImageChoice::Image("x:1".into()));
        assert!(
            matches!(image(&["--build"]), ImageChoice::Build { workspace_root } if workspace_root.is_absolute())
        );
        for bad in [
            &["conform", "text/stats@1", "--build", "--image", "x"][..],
            &["conform", "text/stats@1", "--build-arg", "A=1"],
            &["conform"],
            &["conform", "text/stats@1", "--inputs-json", "[1]"],
            &[
                "conform",
                "text/stats@1",
                "--example",
                "a",
                "--inputs-json",
                "{}",
            ],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn new_needs_a_language() {
        match parse(&["new", "acme/echo@1", "--lang", "python", "--json"]).unwrap() {
            Config::New(config) => {
                assert_eq!(config.request.lang, Lang::Python);
                assert_eq!(config.format, OutputFormat::Json);
                assert!(config.request.registry_root.ends_with("processors"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &["new", "acme/echo@1"][..],
            &["new", "acme/echo@1", "--lang", "go"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
