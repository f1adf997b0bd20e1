//! `proctor completions SHELL` and `proctor man [PAGE]`: the shell completion script and the
//! man pages, generated from the argument definitions that parse the command line, so they
//! never disagree with it. Under `--json` each is the one line `{"status":"ok", …}` carrying
//! the text.

use clap::CommandFactory as _;
use clap_complete::Shell;
use serde_json::json;

use crate::args::{Cli, OutputFormat};
use crate::output::{emit, emit_bytes};

/// The program name the completions register and the man pages document.
const PROGRAM: &str = "proctor";

/// Prints the completion script of `shell`.
pub(crate) fn completions(shell: Shell, format: OutputFormat) -> anyhow::Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), PROGRAM, &mut script);
    print(
        script,
        format,
        json!({"status": "ok", "shell": shell.to_string()}),
        "script",
    )
}

/// Prints the man page `page` (`proctor`, `proctor-ledger-verify`, …), in roff.
pub(crate) fn man(page: &str, format: OutputFormat) -> anyhow::Result<i32> {
    let command = man_pages()
        .into_iter()
        .find_map(|(name, command)| (name == page).then_some(command))
        .ok_or_else(|| anyhow::anyhow!("no man page `{page}`"))?;
    let mut roff = Vec::new();
    clap_mangen::Man::new(command)
        .title(page.to_uppercase())
        .source(format!("{PROGRAM} {}", env!("CARGO_PKG_VERSION")))
        .render(&mut roff)?;
    print(roff, format, json!({"status": "ok", "page": page}), "man")
}

/// `PAGE` of `proctor man`: a page's name, with or without the leading `proctor-`.
pub(crate) fn parse_man_page(raw: &str) -> Result<String, String> {
    let page = match raw {
        PROGRAM => raw.to_owned(),
        _ if raw.starts_with("proctor-") => raw.to_owned(),
        _ => format!("{PROGRAM}-{raw}"),
    };
    let pages = man_pages();
    if pages.iter().any(|(name, _)| *name == page) {
        return Ok(page);
    }
    let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
    Err(format!("no such page; the pages: {}", names.join(", ")))
}

/// Every man page, as `man` names them: `proctor`, then one per subcommand at any depth
/// (`proctor-ledger-verify`), each with its command.
fn man_pages() -> Vec<(String, clap::Command)> {
    fn collect(name: String, command: &clap::Command, pages: &mut Vec<(String, clap::Command)>) {
        pages.push((name.clone(), command.clone()));
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            collect(format!("{name}-{}", sub.get_name()), sub, pages);
        }
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    collect(PROGRAM.to_owned(), &command, &mut pages);
    pages
}

/// Prints `text` as it is, or as the `field` of the JSON line `body`.
fn print(
    text: Vec<u8>,
    format: OutputFormat,
    mut body: serde_json::Value,
    field: &str,
) -> anyhow::Result<i32> {
    match format {
        OutputFormat::Human => emit_bytes(&text)?,
        OutputFormat::Json => {
            body[field] = String::from_utf8(text)?.into();
            emit(&format!("{body}\n"))?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page_named_as_man_names_it() {
        let names: Vec<String> = man_pages().into_iter().map(|(name, _)| name).collect();
        for expected in [
            "proctor",
            "proctor-doctor",
            "proctor-ledger-verify",
            "proctor-man",
        ] {
            assert!(
                names.iter().any(|name| name == expected),
                "{expected}: {names:?}"
            );
        }
        assert_eq!(parse_man_page("proctor"), Ok("proctor".to_owned()));
        assert_eq!(
            parse_man_page("ledger-verify"),
            Ok("proctor-ledger-verify".to_owned())
        );
        assert_eq!(parse_man_page("proctor-run"), Ok("proctor-run".to_owned()));
        let error = parse_man_page("nope").unwrap_err();
        assert!(error.contains("proctor-doctor"), "{error}");
    }
}
