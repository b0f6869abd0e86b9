use super::*;

fn record(remote: &[u8], pass: &str) -> Record {
    Record::new(
        "ix",
        remote,
        3,
        unix_now() - 3600,
        Path::new("ix/spat/a.csv"),
        &[7u8; 32],
        Level::Sha256,
        pass,
    )
}

#[test]
fn appended_records_read_back_and_name_their_day_file() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let a = record(b"/v2x/archive/s1/a.csv", "p1");
    let b = record(b"/v2x/archive/s1/\xffb.csv", "p1");
    ledger.append(&[a.clone(), b.clone()]).unwrap();
    let files = ledger.files_written();
    assert_eq!(files, vec![format!("ledger/{}.jsonl", day_of(unix_now()))]);
    let scan = Scan::read(&dir.path().join(&files[0])).unwrap();
    assert_eq!(scan.records, vec![a, b.clone()]);
    assert!(scan.bad_lines.is_empty());
    // A name that is not UTF-8 keeps its exact bytes.
    assert_eq!(b.remote_bytes(), b"/v2x/archive/s1/\xffb.csv");
}

#[test]
fn a_torn_last_line_is_skipped_and_the_next_record_starts_a_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = day_file(dir.path(), &day_of(unix_now()));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"{\"intersection\":\"ix\",\"remo").unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let a = record(b"/v2x/archive/s1/a.csv", "p2");
    ledger.append(std::slice::from_ref(&a)).unwrap();
    let scan = Scan::read(&path).unwrap();
    assert_eq!(scan.records, vec![a]);
    assert_eq!(scan.bad_lines, vec![1]);
}

#[test]
fn a_file_recorded_by_an_earlier_pass_is_found_and_another_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ledger::open(dir.path()).unwrap();
    let a = record(b"/v2x/archive/s1/a.csv", "p1");
    first.append(std::slice::from_ref(&a)).unwrap();
    // The next pass (a new ledger value, as after a crash).
    let next = Ledger::open(dir.path()).unwrap();
    assert!(
        next.recorded(&record(b"/v2x/archive/s1/a.csv", "p2"))
            .unwrap()
    );
    assert!(
        !next
            .recorded(&record(b"/v2x/archive/s2/a.csv", "p2"))
            .unwrap()
    );
    let mut changed = record(b"/v2x/archive/s1/a.csv", "p2");
    changed.sha256 = hex(&[8u8; 32]);
    assert!(!next.recorded(&changed).unwrap());
    // What this ledger appends is known to it at once.
    let b = record(b"/v2x/archive/s3/b.csv", "p2");
    next.append(std::slice::from_ref(&b)).unwrap();
    assert!(next.recorded(&b).unwrap());
}

#[test]
fn sha256sum_lines_escape_backslashes_as_gnu_does() {
    let mut r = record(b"/x", "p");
    assert_eq!(
        String::from_utf8(r.sha256sum_line()).unwrap(),
        format!("{}  ix/spat/a.csv\n", hex(&[7u8; 32]))
    );
    r.path = "ix/a\\b.csv".into();
    assert_eq!(
        String::from_utf8(r.sha256sum_line()).unwrap(),
        format!("\\{}  ix/a\\\\b.csv\n", hex(&[7u8; 32]))
    );
}

#[test]
fn day_files_are_listed_oldest_first_from_a_date_on() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join(LEDGER_DIR);
    fs::create_dir_all(&ledger_dir).unwrap();
    for n in [
        "2026-01-02.jsonl",
        "2026-01-01.jsonl",
        "notes.txt",
        "2026-01-03.jsonl",
    ] {
        fs::write(ledger_dir.join(n), b"").unwrap();
    }
    let all = day_files(dir.path(), None).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].ends_with("2026-01-01.jsonl"));
    let since = day_files(dir.path(), Some("2026-01-02")).unwrap();
    assert_eq!(since.len(), 2);
    assert!(is_day("2026-12-01") && !is_day("2026-1-01") && !is_day("last"));
}
