//! The man page, v2x-data-sftp-client(8), generated from the command-line
//! definition so that it cannot go stale: `packaging/build-deb` runs the
//! hidden `man` command at package build time. clap_mangen writes the title,
//! NAME, SYNOPSIS, DESCRIPTION and the global OPTIONS; the COMMANDS section
//! walks every visible subcommand with its own options (clap_mangen would
//! list only their names); the configuration reference comes from
//! [`crate::config::reference`], the one list a test holds against the
//! parser. A test in `tests/cli.rs` fails when `--help` shows a subcommand or
//! flag this page lacks.

use std::io::{self, Write};

use clap::{Arg, ArgAction, Command, CommandFactory};

use crate::cli::Cli;
use crate::config::reference::{KEYS, Table};

/// Writes the whole page, in roff, to `w`.
pub fn render(w: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!(
            "v2x-data-sftp-client {}",
            env!("CARGO_PKG_VERSION")
        ));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    w.write_all(DESCRIPTION.as_bytes())?;
    man.render_options_section(w)?;
    commands(w, &cmd)?;
    configuration(w)?;
    w.write_all(STATIC_SECTIONS.as_bytes())
}

/// Escapes text for roff: backslashes and hyphens (so that `--dry-run`
/// stays two ASCII hyphens, not typographic dashes), and a leading `.` or
/// `'`, which would make the line a request.
fn esc(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// A help text as roff paragraphs: clap keeps the doc comment's blank lines
/// in long help; single line breaks are just wrapping.
fn paragraphs(w: &mut dyn Write, text: &str) -> io::Result<()> {
    for (i, para) in text.split("\n\n").enumerate() {
        let joined = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if joined.is_empty() {
            continue;
        }
        if i > 0 {
            writeln!(w, ".IP")?;
        }
        writeln!(w, "{}", esc(&joined))?;
    }
    Ok(())
}

fn value_name(a: &Arg) -> String {
    a.get_value_names()
        .and_then(|v| v.first())
        .map(|s| s.to_string())
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
}

fn repeats(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Append | ArgAction::Count)
        || a.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// `\fB--only\fR \fINAME\fR` for an option, `\fINAME\fR` for a positional.
fn arg_form(a: &Arg) -> String {
    let value = format!("\\fI{}\\fR", esc(&value_name(a)));
    if a.is_positional() {
        return value;
    }
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("\\fB\\-{}\\fR", esc(&s.to_string())));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", esc(l)));
    }
    let names = names.join(", ");
    if a.get_action().takes_values() {
        format!("{names} {value}")
    } else {
        names
    }
}

fn synopsis_part(a: &Arg) -> String {
    let mut form = arg_form(a);
    if let Some(first) = form.split(", ").last() {
        // In a synopsis the long name alone is enough.
        form = first.to_string();
    }
    if repeats(a) {
        form.push_str("...");
    }
    if a.is_required_set() {
        form
    } else {
        format!("[{form}]")
    }
}

fn visible_args(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
}

fn commands(w: &mut dyn Write, cmd: &Command) -> io::Result<()> {
    writeln!(w, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone();
        sub.build();
        let args: Vec<String> = visible_args(&sub)
            .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
            .map(synopsis_part)
            .collect();
        writeln!(w, ".TP")?;
        writeln!(w, "\\fB{}\\fR {}", esc(sub.get_name()), args.join(" "))?;
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|s| s.to_string())
            .unwrap_or_default();
        paragraphs(w, &about)?;
        let options: Vec<&Arg> = visible_args(&sub).collect();
        if options.is_empty() {
            continue;
        }
        writeln!(w, ".RS")?;
        for a in options {
            writeln!(w, ".TP")?;
            writeln!(w, "{}", arg_form(a))?;
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|s| s.to_string())
                .unwrap_or_default();
            paragraphs(w, &help)?;
        }
        writeln!(w, ".RE")?;
    }
    Ok(())
}

fn configuration(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH CONFIGURATION")?;
    paragraphs(
        w,
        "The config file is TOML, /etc/v2x-data-sftp-client/config.toml unless \
         --config names another. Every problem is reported at once with file, key and line, and \
         an unknown key is an error, never silently ignored. Durations are written like \"90s\", \
         \"20min\", \"4h\"; sizes like \"1GiB\".",
    )?;
    for table in [
        Table::Top,
        Table::Status,
        Table::Transfer,
        Table::Intersections,
    ] {
        if let Some(heading) = table.heading() {
            writeln!(w, ".SS {}", esc(heading))?;
        }
        for k in KEYS.iter().filter(|k| k.table == table) {
            writeln!(w, ".TP")?;
            writeln!(w, "\\fB{}\\fR (default: {})", esc(k.key), esc(k.default))?;
            paragraphs(w, k.doc)?;
        }
    }
    Ok(())
}

/// What clap's one-line description leaves out.
const DESCRIPTION: &str = r#".PP
Each
.B run
is one pass over every configured intersection: it connects over SSH,
checks the host key against the known_hosts file before any password or key
is sent, lists the closed logging sessions under
.IR v2x_data_location /archive/,
copies each file into
.IR data_directory / intersection / element /
and removes the remote file only once its local copy is complete, checked
and on disk. The session being written outside
.I archive/
is never touched. An intersection that fails keeps its data for the next
pass; the others go on.
.PP
.B v2x\-data\-sftp\-client.timer
starts
.B v2x\-data\-sftp\-client.service
once a day, at
.B start_time
(local time). Installing the package enables nothing:
.B systemctl enable \-\-now v2x\-data\-sftp\-client.timer
does.
"#;

/// Sections that do not come from a definition in code. The exit statuses
/// are the contract's; `tests/cli.rs` checks them against real runs.
const STATIC_SECTIONS: &str = r#".SH CREDENTIALS
A password, a passphrase or a private key can come from a systemd credential
instead of a file: set
.B password_credential
(or
.BR passphrase_credential ,
.BR private_key_credential )
to the credential's name and load it in the unit, sealed with this host's key:
.PP
.RS
.B systemd\-creds encrypt \-\-name=NAME \- /etc/credstore.encrypted/NAME
.br
.B systemctl edit v2x\-data\-sftp\-client.service
.br
[Service]
.br
LoadCredentialEncrypted=NAME:/etc/credstore.encrypted/NAME
.RE
.PP
systemd hands the decrypted secret to this unit only, in the folder named by
.BR $CREDENTIALS_DIRECTORY .
Outside the unit that folder does not exist:
.B check\-config
lists the credentials it cannot see, says that this is expected, and still
exits 0; a
.B run
started by hand fails the intersections that need one.
.SH EXIT STATUS
.TP
.B 0
Every intersection was handled (for
.BR status :
every last pass was ok and none is stale).
.TP
.B 1
At least one intersection failed; its data is kept where it was, on the
coprocessor, for the next pass.
.TP
.B 2
A usage or config error, reported before anything is touched.
.SH ENVIRONMENT
.TP
.B CREDENTIALS_DIRECTORY
Set by systemd for a unit that loads credentials; where the *_credential keys
are read.
.TP
.B RUST_LOG
Filters log records further, e.g. RUST_LOG=debug.
.SH FILES
.TP
.I /etc/v2x\-data\-sftp\-client/config.toml
The config; a dpkg conffile, mode 0640 root:_v2x\-data\-sftp\-client.
.TP
.I /etc/v2x\-data\-sftp\-client/known_hosts
Host keys of the roadside computers, OpenSSH known_hosts format, written by
.BR trust .
Created by the package when missing, kept on upgrade and remove, deleted on
purge.
.TP
.I /var/lib/v2x\-data\-sftp\-client/
The lock, last\-run.json (what
.B status
reads) and, by default, the pulled data under data/. Pulled data is never
pruned.
.TP
.I /usr/lib/systemd/system/v2x\-data\-sftp\-client.timer
Starts v2x\-data\-sftp\-client.service (one pass, then exit) daily at
start_time, local time.
.SH SEE ALSO
.BR systemd.exec (5),
.BR systemd\-creds (1),
.BR journalctl (1),
.BR ssh\-keygen (1),
.BR sshd_config (5)
"#;
