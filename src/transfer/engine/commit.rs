//! Commit and delete: a file whose reads are over is judged (unchanged,
//! complete, its end confirmed, and under `verify = "sha256"` its SHA-256
//! equal to the coprocessor's own), committed on a worker ([`CommitPool`]:
//! verified, fsynced, renamed, folder fsynced), recorded in the ledger
//! (appended and fsynced, [`Engine::record_and_delete`]), and only then,
//! with the [`Landed`] proof the commit made in hand, is its remote copy
//! deleted, in [`Engine::delete_remote`], **the only place that sends a
//! REMOVE**.
//! Emptied folders go after their last file, and the server refuses a
//! folder that is not empty, so a file that appeared since the listing is
//! never lost.
//!
//! [`CommitPool`]: crate::landing::CommitPool

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::{Active, Engine, FileState, MAX_LOCAL_FAILURES_IN_A_ROW, NO_BATCH, Op, Trouble};
use crate::common::fault;
use crate::common::text::escape;
use crate::error::Disposition;
use crate::landing::{Landed, LandingError, hex_digest};
use crate::ledger::{Level, Record};
use crate::ssh::exec::HashError;
use crate::ssh::sftp::{Response, status};
use crate::transfer::stop::{Cause, Stop};

impl Engine<'_, '_> {
    /// File `j`'s reads are over and its handle closed: commit it or keep it.
    pub(super) fn file_read(&mut self, j: usize, a: Active) -> Result<(), Stop> {
        let (rel, dir) = (self.tree.job_rel(j), self.tree.job_dir(j));
        let Active {
            mut partial,
            resumed,
            state,
            trouble,
            ..
        } = a;
        match trouble {
            Some(Trouble::Remote(why)) => {
                // The prefix already written stays for a later resume.
                drop(partial);
                self.file_error(&rel, format!("{why}; left on the coprocessor"));
                return self.child_done(dir, false);
            }
            Some(Trouble::Local(e)) => {
                // What the failed write left is not trusted for a resume.
                partial.discard();
                return self.local_failure(j, e);
            }
            Some(Trouble::Window) => {
                // Its prefix stays; the next pass resumes after it.
                drop(partial);
                self.deferred.push(j);
                return self.child_done(dir, false);
            }
            Some(Trouble::Changed) | None => {}
        }
        let job = &self.tree.jobs[j];
        let unchanged = trouble.is_none()
            && matches!(state, FileState::Closing { ended: true, fstat: Some(f), .. }
                if f.size == Some(job.size) && f.mtime == Some(job.mtime))
            && partial.offset() == job.size;
        if !unchanged {
            partial.discard();
            self.skip(
                &rel,
                "changed while being read; not deleted, taken whole by a later pass",
            );
            return self.child_done(dir, false);
        }
        let level = match self.level {
            Level::Size => Level::Size,
            Level::Sha256 => match self.remote_hash(j) {
                Ok(remote) if remote == partial.sha256() => {
                    self.report
                        .verification
                        .get_or_insert_with(|| Level::Sha256.as_str().to_string());
                    Level::Sha256
                }
                Err(HashError::NoHasher(why)) => {
                    self.no_hasher(why)?;
                    Level::Size
                }
                Ok(remote) => {
                    // Our download is wrong, not the coprocessor's file:
                    // never resume from these bytes.
                    let local = partial.sha256();
                    partial.discard();
                    self.file_error(
                        &rel,
                        format!(
                            "SHA-256 mismatch: the coprocessor's sha256sum gives {}, the bytes \
                             received here give {}; not landed, left on the coprocessor, pulled \
                             again next pass",
                            hex_digest(&remote),
                            hex_digest(&local)
                        ),
                    );
                    return self.child_done(dir, false);
                }
                Err(HashError::Session(e)) => return Err(e.into()),
                Err(HashError::Unavailable(why)) => {
                    // The bytes may well be right: kept to resume from.
                    drop(partial);
                    self.file_error(
                        &rel,
                        format!("{why}; not checked, so not landed: left on the coprocessor"),
                    );
                    return self.child_done(dir, false);
                }
            },
        };
        fault::point("before-commit");
        self.resumed.insert(j, (resumed, level));
        self.commits.submit(j, partial);
        Ok(())
    }

    /// The coprocessor's SHA-256 of file `j`, from the batch it is in.
    fn remote_hash(&mut self, j: usize) -> Result<[u8; 32], HashError> {
        let path = self.tree.job_path(j);
        match self.batch_of.remove(&j) {
            Some(b) if b != NO_BATCH => {
                let r = self.wire.hash_of(b, path.as_os_str().as_bytes());
                let left = self.batch_left.entry(b).or_insert(1);
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.batch_left.remove(&b);
                    self.wire.hash_end(b);
                }
                r
            }
            _ => Err(HashError::Unavailable(if self.batch_error.is_empty() {
                "no sha256sum was started for it".into()
            } else {
                self.batch_error.clone()
            })),
        }
    }

    /// A commit finished on a worker: on success, and only then, delete.
    pub(super) fn committed(
        &mut self,
        j: usize,
        result: Result<Landed, LandingError>,
    ) -> Result<(), Stop> {
        let (resumed, level) = self.resumed.remove(&j).unwrap_or((0, Level::Size));
        let landed = match result {
            Ok(l) => l,
            Err(e) => return self.local_failure(j, e),
        };
        self.local_failures_in_a_row = 0;
        self.report.resumed_bytes += resumed;
        let sha256 = landed.sha256();
        info!(
            remote_path = %escape(self.tree.job_path(j).as_os_str()),
            local_path = %landed.path().display(),
            bytes = landed.bytes(),
            resumed_from = resumed,
            already_present = landed.already_present(),
            sha256 = %hex_digest(&sha256),
            verified = level.as_str(),
            "landed"
        );
        fault::point("after-commit");
        let job = &self.tree.jobs[j];
        let data_dir = &self.ctx.config.data_directory;
        let record = Record::new(
            &self.ctx.ix.name,
            landed.remote(),
            job.size,
            u64::from(job.mtime),
            landed
                .path()
                .strip_prefix(data_dir)
                .unwrap_or(landed.path()),
            &sha256,
            level,
            self.ctx.pass,
        );
        // Only a file found already here can have a record: one from a pass
        // that crashed between its record and its REMOVE.
        let new = !landed.already_present()
            || !self
                .ctx
                .ledger
                .recorded(&record)
                .map_err(|e| Stop::from(Cause::Ledger(e)))?;
        self.to_record.push((j, landed, new.then_some(record)));
        Ok(())
    }

    /// Records the files committed since the last call in the ledger (one
    /// durable append), then sends their REMOVEs: no remote file goes
    /// without a record. If the ledger cannot be written the intersection
    /// stops, with the files landed here and still on the coprocessor; the
    /// next pass finds them identical, records them and removes them.
    pub(super) fn record_and_delete(&mut self) -> Result<(), Stop> {
        if self.to_record.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.to_record);
        let records: Vec<Record> = batch.iter().filter_map(|(_, _, r)| r.clone()).collect();
        fault::point("before-record");
        self.ctx
            .ledger
            .append(&records)
            .map_err(|e| Stop::from(Cause::Ledger(e)))?;
        self.report.recorded += records.len() as u64;
        fault::point("after-record");
        for (j, landed, _) in batch {
            self.delete_remote(j, landed)?;
        }
        Ok(())
    }

    /// The only place that asks the server to delete a file; see the module
    /// docs for the invariant it keeps. `proof` is consumed: one commit
    /// allows one REMOVE, of the file it was made for.
    fn delete_remote(&mut self, j: usize, proof: Landed) -> Result<(), Stop> {
        let path = self.tree.job_path(j);
        if !proof.is_for(path.as_os_str().as_bytes(), self.tree.jobs[j].identity()) {
            // Unreachable by design; if the bookkeeping ever mixes two files
            // up, the remote file stays.
            let rel = self.tree.job_rel(j);
            self.file_error(
                &rel,
                "internal error: the landing proof is for another remote file; not deleted (a bug, please report it)".into(),
            );
            return self.child_done(self.tree.job_dir(j), false);
        }
        let id = self.wire.send_remove(path.as_os_str().as_bytes());
        self.ops.insert(
            id,
            Op::Remove {
                job: j,
                bytes: proof.bytes(),
                already_present: proof.already_present(),
            },
        );
        Ok(())
    }

    /// The REMOVE's answer: the file is handed over, or it stays and a
    /// later pass finds the identical copy here and removes it then.
    pub(super) fn removed(
        &mut self,
        j: usize,
        bytes: u64,
        already_present: bool,
        response: Response,
    ) -> Result<(), Stop> {
        let dir = self.tree.job_dir(j);
        if let Response::Status {
            code: status::OK, ..
        } = response
        {
            fault::point("after-delete");
            self.removed.insert(j);
            self.report.files += 1;
            self.report.bytes += bytes;
            self.report.already_present += u64::from(already_present);
            let progress = self.ctx.progress;
            progress.files.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(bytes, Ordering::Relaxed);
            (self.ctx.control.on_progress)(progress);
            return self.child_done(dir, true);
        }
        let rel = self.tree.job_rel(j);
        self.file_error(
            &rel,
            format!(
                "landed here but could not be removed remotely: {}; a later pass \
                 finds the identical copy here and removes it then",
                response.describe()
            ),
        );
        self.child_done(dir, false)
    }

    /// A local error landing file `j`: that file's alone when its
    /// disposition says so (reported, kept remotely, retried next pass),
    /// else the intersection stops.
    pub(super) fn local_failure(&mut self, j: usize, e: LandingError) -> Result<(), Stop> {
        if e.disposition() != Disposition::SkipFile {
            return Err(self.landing_stop(j, e));
        }
        let rel = self.tree.job_rel(j);
        self.file_error(
            &rel,
            format!("{e}; left on the coprocessor, retried next pass"),
        );
        self.local_failures_in_a_row += 1;
        if self.local_failures_in_a_row >= MAX_LOCAL_FAILURES_IN_A_ROW {
            return Err(Cause::LocalFailures {
                count: MAX_LOCAL_FAILURES_IN_A_ROW,
                last: e,
                data_root: self.ctx.data_root.to_path_buf(),
            }
            .into());
        }
        self.child_done(self.tree.job_dir(j), false)
    }

    /// One child of folder `d` is resolved: gone from the server or kept.
    pub(super) fn child_done(&mut self, d: usize, gone: bool) -> Result<(), Stop> {
        let dir = &mut self.tree.dirs[d];
        dir.pending = dir.pending.saturating_sub(1);
        if !gone {
            dir.kept = true;
        }
        if dir.pending == 0 && d != 0 {
            self.dir_done(d)?;
        }
        Ok(())
    }

    /// Every child of folder `d` is resolved: remove it if all are gone.
    pub(super) fn dir_done(&mut self, d: usize) -> Result<(), Stop> {
        let dir = &mut self.tree.dirs[d];
        if std::mem::replace(&mut dir.resolved, true) {
            return Ok(());
        }
        if dir.kept {
            if let Some(p) = dir.parent {
                return self.child_done(p, false);
            }
            return Ok(());
        }
        fault::point("before-rmdir");
        // The server refuses a folder that is not empty, so a file that
        // appeared since the listing is never lost.
        let path = self.tree.dir_path(d);
        let id = self.wire.send_rmdir(path.as_os_str().as_bytes());
        self.ops.insert(id, Op::Rmdir(d));
        Ok(())
    }

    /// The RMDIR's answer; the parent learns whether its child is gone.
    pub(super) fn rmdir_answered(&mut self, d: usize, response: Response) -> Result<(), Stop> {
        let gone = matches!(
            response,
            Response::Status {
                code: status::OK,
                ..
            }
        );
        let path = self.tree.dir_path(d);
        if gone {
            info!(remote_path = %escape(path.as_os_str()), "removed emptied folder");
        } else {
            warn!(
                remote_path = %escape(path.as_os_str()),
                "could not remove emptied folder: {}; left for a later pass",
                response.describe()
            );
        }
        match self.tree.dirs[d].parent {
            Some(p) => self.child_done(p, gone),
            None => Ok(()),
        }
    }
}
