//! The CLI reference in docs/cli/, the man pages and the shell completions are generated from the clap
//! definitions; docs/cli/ is checked in, and this test fails when it differs from what the binary generates
//! (a flag changed without the docs). Fix: `bash scripts/gen-docs.sh`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::cli::TestEnv as Env;

fn files(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn docs_cli_matches_the_binary() {
    let env = Env::new();
    env.cmd(&["man", "--format", "markdown", "--out", "gen"])
        .run()
        .ok();
    let generated = files(&env.path().join("gen"));
    let checked_in = files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli"));
    let stale: std::collections::BTreeSet<&String> = generated
        .keys()
        .chain(checked_in.keys())
        .filter(|k| generated.get(*k) != checked_in.get(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/cli is stale ({stale:?} differ from what `sealpack man --format markdown` generates): run `bash scripts/gen-docs.sh` and commit"
    );
    // every command has its page, and the index links it
    for cmd in [
        "push", "pull", "sign", "verify", "attest", "deploy", "promote", "rollback", "history",
    ] {
        let page = format!("sealpack-{cmd}.md");
        assert!(generated.contains_key(&page), "{page}");
        assert!(
            generated["README.md"].contains(&format!("]({page})")),
            "{cmd}"
        );
    }
}

#[test]
fn man_pages_and_completions() {
    let env = Env::new();
    let r = env.cmd(&["man"]).run();
    r.expect_code(0);
    assert!(
        r.stdout.contains(".TH sealpack 1"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    env.cmd(&["man", "--out", "man1"]).run().ok();
    let pages = files(&env.path().join("man1"));
    assert!(
        pages["sealpack-deploy.1"].contains("\\-\\-health\\-cmd"),
        "deploy's page lists its flags"
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = env.cmd(&["completions", shell]).run();
        r.expect_code(0);
        assert!(
            r.stdout.contains("deploy") && r.stdout.contains("policy"),
            "{shell}"
        );
    }
    // the bash script is valid bash
    let r = env.cmd(&["completions", "bash"]).run();
    fs::write(env.path().join("c.bash"), &r.stdout).unwrap();
    let st = std::process::Command::new("bash")
        .arg("-n")
        .arg(env.path().join("c.bash"))
        .status()
        .unwrap();
    assert!(st.success());
    env.cmd(&["completions", "tcsh"]).run().expect_code(2);
}
