//! `tests/demo`: a real pass on this machine against two simulated
//! intersections (real sshd on loopback, MMITSS-shaped sample archives),
//! printing what landed. Ignored by `cargo test`; run through `tests/demo`.

mod common;

use std::path::Path;

use common::*;

fn show_tree(root: &Path) {
    for (rel, size) in walk_files(root) {
        println!("  {rel}  ({size} bytes)");
    }
}

#[test]
#[ignore = "a demonstration, run by tests/demo"]
fn demo() {
    let out_dir = Path::new(&std::env::var("DEMO_DIR").unwrap_or_else(|_| "/tmp/v2x-demo".into()))
        .to_path_buf();
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();

    let mut client = Client::new();
    let mut servers = Vec::new();
    let mut trees = Vec::new();
    for (i, coproc) in ["MainSt-SpatzAve", "Broadway-5th"].iter().enumerate() {
        let sshd = Sshd::start(SshdOptions::default().address(&format!("127.0.0.{}", 11 + i)));
        let mut tree = RemoteTree::with_options(coproc, i as u64);
        for day in 20..23 {
            tree.add_session(
                coproc,
                Stamp::new(2026, 11, day, 0, 0, 0),
                1,
                20_000..=400_000,
            );
        }
        tree.add_zip_session(coproc, Stamp::new(2026, 11, 23, 0, 0, 0), 120_000);
        client.add(
            Site::new(&format!("intersection-{}", i + 1), &sshd, &tree),
            &sshd,
        );
        servers.push(sshd);
        trees.push(tree);
    }
    client.set("min_free_space = \"16MiB\"");
    client.write();
    println!("\n== simulated coprocessors (real OpenSSH sshd on loopback)");
    for (s, t) in servers.iter().zip(&trees) {
        println!("{} serving {}:", s.addr(), t.archive_dir().display());
        show_tree(&t.archive_dir());
    }
    println!(
        "\n== config ({})\n{}",
        client.config_path().display(),
        client.config_text()
    );
    println!(
        "== v2x-data-sftp-client --config {} run",
        client.config_path().display()
    );
    let out = client.run();
    print!("{}", stderr(&out));
    println!("exit status: {:?}", out.status.code());
    println!("\n== what landed in {}", client.data_dir().display());
    show_tree(&client.data_dir());
    println!("\n== what is left in the coprocessors' archive/ folders");
    for t in &trees {
        println!("  {}: {:?}", t.archive_dir().display(), t.remaining_files());
    }
    println!("\n== v2x-data-sftp-client status");
    print!("{}", stdout(&client.cmd(&["status"])));

    // Keep the result for the operator to look at.
    let keep = out_dir.join("data");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(client.data_dir())
        .arg(&keep)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(client.config_path(), out_dir.join("config.toml")).unwrap();
    println!(
        "\nlanded data copied to {} (the simulated servers are gone now)",
        keep.display()
    );
    assert_exit(&out, 0);
    for (i, t) in trees.iter().enumerate() {
        assert_landed(
            &client.data_dir(),
            &format!("intersection-{}", i + 1),
            &t.manifest(),
        );
    }
}
