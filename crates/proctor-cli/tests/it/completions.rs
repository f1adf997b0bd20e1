//! `proctor completions SHELL` and `proctor man [PAGE]`: scripts a shell loads, and roff
//! pages `man` reads.

use std::process::Command;

use crate::util::TestDir;

/// The script of `shell`, checked to be printed whole and to name the commands.
fn script(shell: &str) -> String {
    let dir = TestDir::new();
    let run = dir.proctor(&["completions", shell]).run();
    run.exits(0);
    for command in ["run", "doctor", "ledger", "completions"] {
        run.check(
            run.stdout.contains(command),
            &format!("the {shell} script names `{command}`"),
        );
    }
    run.stdout.clone()
}

#[test]
fn bash_loads_the_completions_and_completes_commands_and_shells() {
    let script = script("bash");
    let dir = TestDir::new();
    let file = dir.write("proctor.bash", &script);
    // `_proctor CMD CUR PREV` is what bash calls on TAB, with COMP_WORDS and COMP_CWORD set.
    let program = format!(
        r#"source {}
complete -p proctor
COMP_WORDS=(proctor do); COMP_CWORD=1; _proctor proctor do proctor
echo "commands: ${{COMPREPLY[*]}}"
COMP_WORDS=(proctor completions f); COMP_CWORD=2; _proctor proctor f completions
echo "shells: ${{COMPREPLY[*]}}""#,
        file.display()
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "complete -o bashdefault -o default -o nosort -F _proctor proctor",
            "commands: doctor",
            "shells: fish",
        ],
        "{stderr}"
    );
}

#[test]
fn zsh_and_fish_scripts_define_their_completions() {
    assert!(script("zsh").starts_with("#compdef proctor\n"));
    let fish = script("fish");
    assert!(
        fish.lines()
            .any(|line| line.starts_with("complete -c proctor ") && line.contains("-a \"doctor\"")),
        "{fish}"
    );
}

#[test]
fn man_pages_are_roff_for_proctor_and_each_command() {
    let dir = TestDir::new();
    let run = dir.proctor(&["man"]).run();
    run.exits(0);
    run.check(
        run.stdout
            .lines()
            .any(|line| line.starts_with(".TH PROCTOR 1 ")),
        "a roff title line",
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        run.check(run.stdout.contains(section), section);
    }
    let run = dir.proctor(&["man", "ledger-verify"]).run();
    run.exits(0);
    run.check(
        run.stdout
            .lines()
            .any(|line| line.starts_with(".TH PROCTOR-LEDGER-VERIFY 1 ")),
        "a command's page is titled as the SUBCOMMANDS section names it",
    );
    let man = dir.write("proctor-ledger-verify.1", &run.stdout);
    // Rendered by man(1) where it is installed, as a reader would see it.
    if let Ok(output) = Command::new("man")
        .env("MANWIDTH", "80")
        .arg("-l")
        .arg(&man)
        .output()
    {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text}");
        assert!(
            text.contains("proctor-ledger-verify - Recompute hash chains"),
            "{text}"
        );
    }
    let run = dir.proctor(&["man", "nope"]).run();
    run.exits(2);
    run.check(
        run.stderr.contains("proctor-doctor"),
        "the pages are listed",
    );
}

#[test]
fn under_json_the_text_is_one_line() {
    let dir = TestDir::new();
    let run = dir.proctor(&["completions", "bash", "--json"]).run();
    run.exits(0);
    let body = run.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["shell"], "bash");
    assert!(body["script"].as_str().unwrap().contains("_proctor()"));
    let run = dir.proctor(&["--json", "man"]).run();
    run.exits(0);
    let body = run.json();
    assert_eq!(body["page"], "proctor");
    assert!(body["man"].as_str().unwrap().contains(".TH PROCTOR 1 "));
}
