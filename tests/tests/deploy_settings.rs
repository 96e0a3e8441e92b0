//! The Kubernetes manifests give every setting each program reads a value
//! (ConfigMap) or a reference (Secret): a setting added to a program without
//! a place in `deploy/k8s` fails here.
use std::{path::PathBuf, process::Command};

/// The environment variables a program's `--help` lists, one per setting.
fn settings_of(program: &str) -> Vec<String> {
    let output = Command::new(e2e::binary(program))
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let names: Vec<String> = help
        .lines()
        .filter_map(|line| line.trim().strip_prefix("env "))
        .filter_map(|rest| rest.split(',').next())
        .map(str::to_owned)
        .collect();
    assert!(
        names.len() > 5,
        "{program} --help lists its settings:\n{help}"
    );
    names
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
    for program in ["post-service", "image-service", "outbox-relay"] {
        for name in settings_of(program) {
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
