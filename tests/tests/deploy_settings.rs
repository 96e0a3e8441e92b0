//! Settings against the deployment files and the docs: the Kubernetes
//! manifests give every setting each program reads a value (ConfigMap) or a
//! reference (Secret), and `docs/SETTINGS.md` is the table of every setting
//! generated from the programs' `--help`.
use std::{path::PathBuf, process::Command};

const PROGRAMS: [&str; 3] = ["post-service", "image-service", "outbox-relay"];

/// One setting as `--help` describes it.
struct Setting {
    key: String,
    variable: String,
    default: String,
    doc: String,
}

/// The settings a program's `--help` lists: a key line, then
/// `env VARIABLE, default VALUE`, then the description.
fn settings_of(program: &str) -> Vec<Setting> {
    let output = Command::new(e2e::binary(program))
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let lines: Vec<&str> = help.lines().collect();
    let mut settings = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix("env ") else {
            continue;
        };
        let (variable, default) = rest.split_once(", default ").expect("env line");
        settings.push(Setting {
            key: lines[i - 1].trim().to_owned(),
            variable: variable.to_owned(),
            default: default.to_owned(),
            doc: lines.get(i + 1).map(|d| d.trim()).unwrap_or("").to_owned(),
        });
    }
    assert!(
        settings.len() > 5,
        "{program} --help lists its settings:\n{help}"
    );
    settings
}

fn manifests() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/k8s exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
            text.push('\n');
        }
    }
    text
}

#[test]
fn every_setting_of_every_program_has_a_value_or_a_secret_in_the_manifests() {
    let manifests = manifests();
    let mut missing = Vec::new();
    for program in PROGRAMS {
        for name in settings_of(program).into_iter().map(|s| s.variable) {
            // `NAME: value` in the ConfigMap, or `- name: NAME` with a secretKeyRef.
            let has_value = manifests.contains(&format!("{name}:"));
            let has_reference = manifests.contains(&format!("name: {name}\n"));
            if !has_value && !has_reference {
                missing.push(format!("{program}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "settings with no place in deploy/k8s:\n{}",
        missing.join("\n")
    );
}

/// The settings table of `docs/SETTINGS.md`.
fn settings_table() -> String {
    let mut text = String::from(
        "# Settings\n\n\
         Generated from each program's `--help` by `tests/tests/deploy_settings.rs`\n\
         (`UPDATE_DOCS=1 deploy/local/test.sh -E 'test(settings_table)'` rewrites it).\n\
         Each program reads defaults, then the TOML file of `--config` or\n\
         `<PREFIX>_CONFIG`, then these environment variables (lists comma-separated).\n",
    );
    for program in PROGRAMS {
        text.push_str(&format!(
            "\n## {program}\n\n| variable | default | meaning |\n| --- | --- | --- |\n"
        ));
        for setting in settings_of(program) {
            let cell = |s: &str| s.replace('|', "\\|");
            text.push_str(&format!(
                "| `{}` | `{}` | {} (`{}`) |\n",
                setting.variable,
                cell(&setting.default),
                cell(&setting.doc),
                setting.key
            ));
        }
    }
    text
}

#[test]
fn the_settings_table_in_the_docs_matches_the_programs() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/SETTINGS.md");
    let table = settings_table();
    if std::env::var("UPDATE_DOCS").is_ok() {
        std::fs::write(&path, &table).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == table,
        "docs/SETTINGS.md is out of date; rerun with UPDATE_DOCS=1"
    );
}
