//! The package and its documents as the operator gets them: the shipped
//! example config that dpkg guards as a conffile, the package relations,
//! and the README as the operator's short path. The installed package itself
//! is tested under a booted systemd by `tests/e2e/run`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The shipped example is a dpkg conffile: when it changes, dpkg stops at the
/// next upgrade and asks every operator who edited theirs (and a scripted
/// upgrade that cannot answer fails). Change it only on purpose: update this
/// hash and say why in debian/changelog.
#[test]
fn shipped_config_example_is_unchanged_so_upgrades_ask_nothing() {
    const PINNED: &str = "83cae39ef81130a1853f153b0b86df57afe488a76d65233685bf80c97766cde8";
    let got = Sha256::digest(read("packaging/config.toml").as_bytes());
    let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        got, PINNED,
        "packaging/config.toml changed: every operator who edited theirs gets a dpkg prompt on upgrade"
    );
}

#[test]
fn package_metadata_keeps_known_hosts_out_of_conffiles_and_declares_relations() {
    let cargo: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses");
    let deb = &cargo["package"]["metadata"]["deb"];
    let conf: Vec<&str> = deb["conf-files"]
        .as_array()
        .expect("conf-files is a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(conf, ["/etc/v2x-data-sftp-client/config.toml"]);
    let assets = deb["assets"].to_string();
    assert!(
        !assets.contains("known_hosts"),
        "known_hosts must not be shipped (postinst creates it): {assets}"
    );
    assert!(
        deb["recommends"]
            .as_str()
            .unwrap_or("")
            .contains("openssh-client")
    );
    assert!(
        deb["suggests"]
            .as_str()
            .unwrap_or("")
            .contains("prometheus-node-exporter")
    );

    let postinst = read("debian/postinst");
    assert!(postinst.contains("KNOWN_HOSTS=/etc/v2x-data-sftp-client/known_hosts"));
    assert!(
        postinst.contains("if [ ! -e \"$KNOWN_HOSTS\" ]"),
        "created only when missing"
    );
    let postrm = read("debian/postrm");
    let purge = postrm
        .split("if [ \"$1\" = \"purge\" ]")
        .nth(1)
        .expect("postrm has a purge branch");
    assert!(purge.contains("rm -f /etc/v2x-data-sftp-client/known_hosts"));
}

fn docs() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_string(), read("README.md"))];
    let dir = repo().join("docs");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("docs/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for n in names {
        let rel = format!("docs/{n}");
        let text = read(&rel);
        out.push((rel, text));
    }
    out
}

#[test]
fn readme_is_the_operators_short_path() {
    let readme = read("README.md");
    assert!(
        readme.len() <= 15 * 1024,
        "README.md is {} bytes; keep it an operator's ten-minute read, move detail to docs/",
        readme.len()
    );
    // CI (.ci/run) runs the test command the README names.
    let head: String = readme.lines().take(15).collect::<Vec<_>>().join("\n");
    for cmd in ["tests/demo", "tests/run-all"] {
        assert!(
            head.contains(&format!("    {cmd} ")),
            "{cmd} not among the set-up commands at the top"
        );
    }
    for section in [
        "## Install",
        "## What the coprocessor needs",
        "## Key authentication",
        "## Configure",
        "## The first night",
        "## Schedule and window",
        "## Logs",
        "## Status and alerts",
        "## Retention",
        "## Upgrade",
        "## Troubleshooting",
        "## Remove",
    ] {
        assert!(readme.contains(section), "README.md lacks {section:?}");
    }
    for must in [
        "local time",
        "never pruned",
        "_v2x-data-sftp-client",
        "LoadCredentialEncrypted=",
    ] {
        assert!(readme.contains(must), "README.md does not say {must:?}");
    }
}

#[test]
fn docs_never_teach_a_blind_keyscan_nor_show_a_build_machine_path() {
    for (name, text) in docs() {
        for line in text.lines() {
            assert!(
                !(line.contains("ssh-keyscan") && line.contains(">>")),
                "{name} appends ssh-keyscan output unchecked: {line}"
            );
            for machine in ["/work/", "/root/", "/home/runner"] {
                assert!(
                    !line.contains(machine),
                    "{name} shows a build machine's path: {line}"
                );
            }
        }
    }
}

#[test]
fn doc_links_point_at_files_that_exist() {
    for (name, text) in docs() {
        let base = repo().join(&name);
        let base = base.parent().unwrap_or(Path::new("."));
        for part in text.split("](").skip(1) {
            let target = part.split([')', '#']).next().unwrap_or("");
            if target.is_empty() || target.starts_with("http") {
                continue;
            }
            assert!(
                base.join(target).exists(),
                "{name} links to {target}, which does not exist"
            );
        }
    }
}
